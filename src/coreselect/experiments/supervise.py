"""Worker processes that die with the benchmark that started them.

A benchmark runs its runs in child processes (``spawn``). Each child asks the kernel to kill it when its
parent dies (``PR_SET_PDEATHSIG`` on Linux; elsewhere a thread that watches the parent), so a benchmark
killed by any signal, SIGKILL included, leaves no worker training behind. Children ignore SIGINT: Ctrl-C
is the benchmark's to handle — it stops its workers and marks their runs interrupted. (A child starts with
SIGINT blocked, so a Ctrl-C during its start-up does not reach it either.)
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` (its parent) does, however the parent ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request was made
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _child(task: Callable[..., Any], args: tuple[Any, ...], conn: Connection, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(task(*args))
    conn.close()


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back (not lost) while a child starts: the child keeps it blocked from its first instruction,
    and the parent receives a Ctrl-C that came meanwhile once the child is in its list of workers."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass(frozen=True)
class Finished:
    """A task's outcome: its key and the value it returned, or ``crashed`` with the worker's exit code."""

    key: Any
    value: Any = None
    crashed: int | None = None


class Interrupted(KeyboardInterrupt):
    """Raised by :func:`run_supervised` when interrupted; ``in_flight`` are the keys of the stopped tasks."""

    def __init__(self, in_flight: list[Any]) -> None:
        super().__init__()
        self.in_flight = in_flight


def run_supervised(tasks: Iterable[tuple[Any, Callable[..., Any], tuple[Any, ...]]], jobs: int,
                   on_finished: Callable[[Finished], None]) -> None:
    """Run ``(key, function, args)`` tasks, ``jobs`` child processes at a time (picklable functions and
    arguments), calling ``on_finished`` as each ends. On KeyboardInterrupt (Ctrl-C, or SIGTERM turned into
    it by the caller) every worker is killed and :class:`Interrupted` names their tasks."""
    context = multiprocessing.get_context("spawn")
    queue = list(tasks)[::-1]
    live: dict[Any, tuple[multiprocessing.process.BaseProcess, Connection, Any]] = {}  # sentinel → worker
    try:
        while queue or live:
            while queue and len(live) < jobs:
                key, function, args = queue.pop()
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(function, args, send, os.getpid()), daemon=True)
                with _sigint_blocked():  # the child inherits the mask; a Ctrl-C meanwhile waits for the parent
                    process.start()
                    send.close()
                    live[process.sentinel] = (process, receive, key)
            for sentinel in wait(list(live)):
                process, receive, key = live.pop(sentinel)
                value = receive.recv() if receive.poll() else None
                process.join()
                crashed = None if process.exitcode == 0 else process.exitcode
                on_finished(Finished(key, value, crashed))
    except KeyboardInterrupt:
        for process, _, _ in live.values():
            process.kill()
        for process, _, _ in live.values():
            process.join()
        raise Interrupted([key for _, _, key in live.values()]) from None
