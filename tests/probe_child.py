"""One ``coreselect`` command run as ``python -m coreselect`` runs it, in a process of its own forked from a
server that has imported coreselect once (``tests/test_bad_input.py``'s fast path: a fresh interpreter spends
seconds importing torch for each case). The command gets its own working folder, environment and exit status;
its stdout and stderr go to files."""

from __future__ import annotations

import os
import runpy
import sys


def run_command(args: list[str], folder: str, stdout: str, stderr: str, environment: dict[str, str],
                status: str) -> None:
    """The body of the child process: its exit status is the command's (multiprocessing turns ``SystemExit``
    into the exit code and prints any other exception's traceback to stderr, as the interpreter would), and is
    written to the file ``status`` as well: the forkserver's report of a child's exit code can be lost (it then
    reads 255)."""
    os.chdir(folder)
    os.environ.clear()
    os.environ.update(environment)
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = ["coreselect", *args]
    code = 1  # an uncaught exception: the interpreter's exit status
    try:
        runpy.run_module("coreselect", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        raise
    finally:
        with open(status, "w") as written:
            written.write(str(code))
