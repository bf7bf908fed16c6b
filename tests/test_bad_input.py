"""Every probe case (tests/probe_cases.py) ends as it must: exit 2 with one line naming the problem and the
fix, or exit 0 with the warning it deserves; never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from probe_cases import CASES, Case

NOBODY = 65534


def run_case(case: Case, folder: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Prepare ``case`` in ``folder`` and run coreselect on it as a user would (a fresh process)."""
    args = case.prepare(folder)
    command = [sys.executable, "-m", "coreselect", *args]
    if case.as_nobody and os.geteuid() == 0:  # root writes read-only files: run as an unprivileged user
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=folder, env=env)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_ends_cleanly(case: Case, tmp_path: Path) -> None:
    if case.as_nobody and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no unprivileged user to test permissions with")
        tmp_path = Path(tempfile.mkdtemp(prefix="coreselect-probe-"))  # pytest's folders are root's alone
        tmp_path.chmod(0o777)
    try:
        done = run_case(case, tmp_path)
    finally:
        if case.as_nobody and os.geteuid() == 0:
            shutil.rmtree(tmp_path, ignore_errors=True)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.exit_code, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line]
    if case.exit_code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    text = done.stderr + done.stdout
    for needle in case.needles:
        assert needle in text, text
