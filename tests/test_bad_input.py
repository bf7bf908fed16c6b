"""Every probe case (tests/probe_cases.py) ends as it must: exit 2 with one line naming the problem and the
fix, or exit 0 with the warning it deserves; never a traceback.

Each case is the ``python -m coreselect`` command in a process of its own, forked from a server that imported
coreselect once (``tests/probe_child.py``): the interpreter's start-up, mostly ``import torch``, is paid once
instead of 52 times. The permission cases, which run as another user, and ``benchmarks/bad_input_probe.py`` start
a fresh interpreter for each case (``run_case``); both ways give the same exit codes and messages.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from probe_cases import CASES, Case
from probe_child import run_command

NOBODY = 65534


def run_case(case: Case, folder: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Prepare ``case`` in ``folder`` and run coreselect on it as a user would (a fresh process)."""
    args = case.prepare(folder)
    command = [sys.executable, "-m", "coreselect", *args]
    if case.as_nobody and os.geteuid() == 0:  # root writes read-only files: run as an unprivileged user
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=folder, env=_environment())


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["coreselect.cli", "probe_child"])


def run_case_forked(case: Case, folder: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``run_case`` without the interpreter's start-up: the command runs as ``python -m coreselect`` would, in a
    process of its own, forked from a server that imported coreselect once."""
    args = case.prepare(folder)
    with tempfile.TemporaryDirectory(prefix="coreselect-probe-out-") as out:
        stdout, stderr, status = Path(out) / "stdout", Path(out) / "stderr", Path(out) / "status"
        child = FORKSERVER.Process(target=run_command, args=(args, str(folder), str(stdout), str(stderr),
                                                             _environment(), str(status)))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["coreselect", *args], timeout)
        code = int(status.read_text()) if status.is_file() else child.exitcode  # none: killed by a signal
        return subprocess.CompletedProcess(["coreselect", *args], code, stdout.read_text(), stderr.read_text())


def _outcome(case: Case) -> subprocess.CompletedProcess | None:
    """``case`` run in a folder of its own (world-writable when it runs as ``nobody``, then as a fresh interpreter
    under ``setpriv``; otherwise forked from the server); None if it cannot be."""
    unprivileged = case.as_nobody and os.geteuid() == 0
    if unprivileged and shutil.which("setpriv") is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="coreselect-probe-"))
    if unprivileged:
        folder.chmod(0o777)
    try:
        return run_case(case, folder) if unprivileged else run_case_forked(case, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> dict[str, subprocess.CompletedProcess | None]:
    """Every selected case run as a user would, as many at a time as there are cores (each is its own process)."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if getattr(item, "originalname", None) == "test_case_ends_cleanly"}
    cases = [c for c in CASES if c.name in selected]
    with ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0)))) as pool:
        return dict(zip([c.name for c in cases], pool.map(_outcome, cases), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_ends_cleanly(case: Case, outcomes: dict[str, subprocess.CompletedProcess | None]) -> None:
    done = outcomes[case.name]
    if done is None:
        pytest.skip("running as root without setpriv: no unprivileged user to test permissions with")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.exit_code, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line]
    if case.exit_code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    text = done.stderr + done.stdout
    for needle in case.needles:
        assert needle in text, text
