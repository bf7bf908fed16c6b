"""The bad-input probe: every case of ``tests/probe_cases.py`` run as a user would (a fresh ``coreselect``
process, a 240 s limit), classified and counted: clear error (exit 2, one line naming problem and fix),
handled (exit 0 as expected, with its warning), traceback, silent (a wrong exit code or a missing message:
the user is not told), hang (past the limit).

    .venv/bin/python benchmarks/bad_input_probe.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from probe_cases import CASES, Case
from test_bad_input import run_case


def classify(case: Case) -> tuple[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="coreselect-probe-"))
    folder.chmod(0o777)
    try:
        done = run_case(case, folder)
    except subprocess.TimeoutExpired:
        return "hang", "no answer within 240 s"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [line for line in done.stderr.strip().splitlines() if line]
    text = done.stderr + done.stdout
    if "Traceback" in done.stderr:
        return "traceback", lines[-1] if lines else ""
    if done.returncode != case.exit_code or any(n not in text for n in case.needles):
        return "silent", f"exit {done.returncode}: {lines[-1] if lines else '(nothing said)'}"
    if case.exit_code == 2:
        one_line = len(lines) == 1 and lines[0].startswith("error: ")
        return ("clear error" if one_line else "silent"), lines[-1] if lines else ""
    return "handled", next((line for line in lines if line.startswith("warning:")), "exit 0")


def main() -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        print("note: running as root without setpriv; the permission cases run as root", file=sys.stderr)
    counts: Counter[str] = Counter()
    for case in CASES:
        kind, said = classify(case)
        counts[kind] += 1
        print(f"{kind:12s} {case.name}: {said}")
    print("\n" + ", ".join(f"{kind} {counts[kind]}" for kind in
                           ("clear error", "handled", "traceback", "silent", "hang")) + f" (of {len(CASES)} cases)")


if __name__ == "__main__":
    main()
