"""Data-parallel jobs (``torchrun`` / DDP): which rank this process is, how example pools are split across
ranks, and the few collectives selection needs.

A process that ``torchrun`` did not start is a world of one, and every helper below is then the identity:
single-process code pays nothing. Under ``torchrun`` the process group is set up by
:func:`init_from_environment` (``gloo`` on CPU, ``nccl`` on CUDA). Code that one rank runs alone (or that
ranks run on different items, as in :meth:`World.share_work`) runs inside :func:`local_only`, where
:func:`world` is a world of one again, so no collective can wait for ranks that never come.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from coreselect.errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")

_LOCAL: ContextVar[bool] = ContextVar("coreselect_local_only", default=False)


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes (rank 0 writes files and the store)."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- splitting ---------------------------------------------------------------------------------
    def part_sizes(self, n: int) -> list[int]:
        """Sizes of the ``size`` contiguous parts of ``n`` rows, in rank order (they differ by at most one)."""
        return [n // self.size + (r < n % self.size) for r in range(self.size)]

    def splits(self, n: int) -> bool:
        """Whether ``n`` rows are split across ranks: a distributed job, and at least one row per rank."""
        return self.distributed and n >= self.size

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's part of ``n`` rows."""
        sizes = self.part_sizes(n)
        start = sum(sizes[: self.rank])
        return start, start + sizes[self.rank]

    # -- collectives (identity in a world of one) ----------------------------------------------------
    def gather_rows(self, part: Tensor, sizes: Sequence[int]) -> Tensor:
        """Every rank's ``part`` (rank r holding ``sizes[r]`` rows, same trailing shape and dtype) concatenated
        in rank order, on every rank (detached: no gradient flows through a gather)."""
        if not self.distributed:
            return part
        if part.shape[0] != sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {part.shape[0]} rows, expected {sizes[self.rank]}")
        longest = max(sizes)
        padded = part.new_zeros((longest, *part.shape[1:]))
        padded[: part.shape[0]] = part.detach()
        pieces = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(pieces, padded.contiguous())
        return torch.cat([piece[:rows] for piece, rows in zip(pieces, sizes, strict=True)])

    def gather_parts(self, part: Tensor, n: int) -> Tensor:
        """The ``n`` rows that :meth:`bounds` split across ranks, reassembled on every rank from each rank's
        ``part`` (how signals of a pool, and a training step's outputs on its batch, are gathered)."""
        return self.gather_rows(part, self.part_sizes(n))

    def sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over ranks (a new tensor)."""
        if not self.distributed:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share_work(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]`` with the items dealt round-robin across ranks, every result on every
        rank. ``fn`` runs in :func:`local_only` and must be a deterministic function of its item; results
        are pickled, so keep them small (indices, weights)."""
        if not self.distributed:
            return [fn(item) for item in items]
        with local_only():
            mine = {i: _to_cpu(fn(items[i])) for i in range(self.rank, len(items), self.size)}
        gathered: list[dict[int, R] | None] = [None] * self.size
        dist.all_gather_object(gathered, mine)
        results: dict[int, R] = {}
        for part in gathered:
            assert part is not None
            results.update(part)
        return [results[i] for i in range(len(items))]


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return value


def world() -> World:
    """The current job's world: from the initialised process group, or a world of one."""
    if _LOCAL.get() or not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size())


@contextmanager
def local_only() -> Iterator[None]:
    """Inside, :func:`world` is a world of one: for work one rank does alone, or ranks do on different items."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str = "auto") -> torch.device:
    """This process's device: ``auto`` is CUDA when present, else the CPU; under ``torchrun`` ``auto`` and
    ``cuda`` mean ``cuda:LOCAL_RANK`` (one GPU per process)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and launched_by_torchrun():
        device = f"cuda:{local_rank}"
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise InvalidInputError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} asked for, but this machine has no CUDA GPU; pass --device cpu "
                                "(or auto)")
    if chosen.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device {device!r} is not supported; pass auto, cpu, cuda or cuda:N")
    return chosen


def init_from_environment(device: str = "auto") -> tuple[World, torch.device]:
    """Join the job ``torchrun`` started (when it did: ``nccl`` on CUDA, else ``gloo``) and return the world
    and this rank's device (:func:`rank_device`)."""
    chosen = rank_device(device)
    if launched_by_torchrun() and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return world(), chosen


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, module_args: Sequence[str], device: str = "auto") -> int:
    """Run ``python -m coreselect <module_args>`` as ``nproc`` processes under ``torchrun`` on this machine;
    returns the job's exit status. More processes than GPUs (on ``device`` CUDA) or than the cores this
    process may use (on the CPU) are refused."""
    if nproc < 1:
        raise InvalidInputError(f"--nproc must be a positive number of processes, got {nproc}")
    if rank_device(device).type == "cuda":
        available, what = torch.cuda.device_count(), "GPUs"
    else:
        available, what = len(os.sched_getaffinity(0)), "CPU cores available to this process"
    if nproc > available:
        raise InvalidInputError(f"--nproc {nproc} is more processes than the {available} {what}; "
                                f"pass --nproc {available} or fewer")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "coreselect", *module_args]
    return subprocess.call(command)
