"""One-line notes to the user (a damaged checkpoint set aside, a budget under one batch, an empty class).

Library code logs them on the ``coreselect`` logger; the command line prints them to stderr as
``warning: ...``. A program using the library sees them through :mod:`logging` as usual.
"""

from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("coreselect")


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after the handler is made)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def print_notes_to_stderr() -> None:
    """Print the library's notes (INFO and above) as one line each on stderr; idempotent."""
    if any(getattr(h, "_coreselect", False) for h in LOG.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(_Lowercase())
    handler._coreselect = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
