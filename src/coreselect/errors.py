"""User-facing errors: each names the problem and the fix, in one line.

The CLI prints a :class:`CoreselectError` as a single line without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class CoreselectError(Exception):
    """An error caused by the user's input or environment, with the fix in its message."""


class DatasetNotFoundError(CoreselectError):
    """Dataset files are missing."""


class InvalidInputError(CoreselectError, ValueError):
    """An argument, a shape or a label does not fit."""


class UnknownNameError(InvalidInputError, KeyError):
    """A model, strategy or dataset name that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NonFiniteLossError(CoreselectError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
