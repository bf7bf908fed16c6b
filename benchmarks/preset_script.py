"""What the preset-backed benchmark scripts share: their command-line options and running the preset."""

from __future__ import annotations

import argparse
from pathlib import Path

from coreselect.experiments.grid import BenchSpec, RunOutcome, run_preset
from coreselect.experiments.store import ResultStore


def preset_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every preset script takes: --seeds, --jobs, --store."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--store", type=Path, default=None, help="results store (default: the preset's)")
    return parser


def run_preset_from(args: argparse.Namespace, name: str) -> tuple[BenchSpec, ResultStore, list[RunOutcome]]:
    """Run preset ``name`` with the parsed options."""
    return run_preset(name, seeds=args.seeds, jobs=args.jobs, store=args.store)
