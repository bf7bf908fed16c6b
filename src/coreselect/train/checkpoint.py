"""Verified, atomic checkpoint files: a run killed at any moment, or a checkpoint damaged on disk, never
resumes from bad state.

Each file is a header (magic, SHA-256 of the payload) followed by the ``torch.save`` payload, written
through a temporary file and an atomic rename. The previous checkpoint is kept beside the latest
(``<name>.prev``); on load a file whose checksum does not match is set aside (``<name>.corrupt``), said in
one line, and the previous one is tried; if none is good the run starts over.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from coreselect.notes import LOG

MAGIC = b"CSCKPT01"
_HEADER = len(MAGIC) + hashlib.sha256().digest_size


class CorruptFileError(Exception):
    """A verified file whose contents do not match its checksum (or cannot be read at all)."""


def write_verified(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` behind its checksum to ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_verified(path: str | Path) -> bytes:
    """The payload written by :func:`write_verified`; :class:`CorruptFileError` if it does not check out."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CorruptFileError(f"cannot be read ({err.strerror})") from err
    if len(data) < _HEADER or not data.startswith(MAGIC):
        raise CorruptFileError("has no checksum header (truncated, or not written by coreselect)")
    payload = data[_HEADER:]
    if hashlib.sha256(payload).digest() != data[len(MAGIC):_HEADER]:
        raise CorruptFileError("does not match its checksum (damaged or truncated)")
    return payload


def save_tensors(path: str | Path, state: Any) -> None:
    """``torch.save`` of ``state`` as a verified file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_verified(path, buffer.getvalue())


def load_tensors(path: str | Path) -> Any:
    """What :func:`save_tensors` wrote; :class:`CorruptFileError` if the file does not check out."""
    payload = read_verified(path)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # a payload that checks out but was written by something else
        raise CorruptFileError(f"cannot be unpickled ({type(err).__name__})") from err


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path``, keeping the checkpoint it replaces as ``<name>.prev``."""
    path = Path(path)
    if path.is_file():
        os.replace(path, previous_path(path))
    save_tensors(path, state)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The latest good state saved at ``path`` (or its previous one), or None if there is none.

    A checkpoint that does not check out is renamed ``<name>.corrupt`` and reported in one line.
    """
    path = Path(path)
    candidates = [p for p in (path, previous_path(path)) if p.is_file()]
    for i, candidate in enumerate(candidates):
        try:
            return load_tensors(candidate)
        except CorruptFileError as err:
            aside = candidate.with_name(candidate.name + ".corrupt")
            os.replace(candidate, aside)
            fallback = ("resuming from the previous checkpoint" if i + 1 < len(candidates)
                        else "no good checkpoint is left: the run starts over")
            LOG.warning("checkpoint %s %s; set aside as %s, %s", candidate, err, aside.name, fallback)
    return None


def remove_checkpoint(path: str | Path) -> None:
    """Remove the checkpoint at ``path`` and the previous one kept beside it."""
    path = Path(path)
    path.unlink(missing_ok=True)
    previous_path(path).unlink(missing_ok=True)
