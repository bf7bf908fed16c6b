"""The results store: every run, its evaluations and its selections, in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from coreselect.experiments.config import RunConfig
from coreselect.train.trainer import EvalRecord, TrainResult

SCHEMA_VERSION = 2
# Columns added after version 1: (name, SQL type); a store of an earlier version gains them when opened.
ADDED_COLUMNS = {2: [("forward_s_per_example", "REAL")]}
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    created_at TEXT NOT NULL,
    finished_at TEXT,
    config TEXT NOT NULL,
    setting_key TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    strategy TEXT NOT NULL,
    method TEXT NOT NULL,
    budget REAL NOT NULL,
    epochs INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    label_noise REAL NOT NULL,
    test_accuracy REAL,
    test_loss REAL,
    steps INTEGER,
    examples INTEGER,
    selection_forward_examples INTEGER,
    selection_s REAL,
    training_s REAL,
    evaluation_s REAL,
    message TEXT,
    forward_s_per_example REAL
);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    examples INTEGER NOT NULL,
    test_accuracy REAL NOT NULL,
    test_loss REAL NOT NULL,
    train_loss REAL NOT NULL,
    selection_s REAL NOT NULL,
    training_s REAL NOT NULL,
    evaluation_s REAL NOT NULL,
    extras TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS selections (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    step INTEGER NOT NULL,
    size INTEGER NOT NULL,
    noisy_share REAL,
    indices BLOB NOT NULL,
    weights BLOB,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS example_scores (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scores BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    status: str
    config: RunConfig
    test_accuracy: float | None
    selection_s: float | None
    training_s: float | None
    evaluation_s: float | None
    steps: int | None
    examples: int | None
    selection_forward_examples: int | None
    message: str | None
    forward_s_per_example: float | None = None

    @property
    def learning_s(self) -> float:
        """Selection plus training wall-clock: the cost of the method."""
        return (self.selection_s or 0.0) + (self.training_s or 0.0)

    @property
    def forward_floor_s(self) -> float | None:
        """The cost floor of the run's selection: its forwarded examples × one no-grad forward per example."""
        if self.forward_s_per_example is None:
            return None
        return (self.selection_forward_examples or 0) * self.forward_s_per_example


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ResultStore:
    """A SQLite database of runs; safe to open from several processes (WAL journal)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # creating the file and switching it to WAL must not race with another process doing the same
        with FileLock(self.path.parent / f"{self.path.name}.lock"), self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}; this coreselect reads "
                                   f"{SCHEMA_VERSION} and earlier: upgrade coreselect")
            db.executescript(SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for name, kind in (column for columns in ADDED_COLUMNS.values() for column in columns):
                if name not in present:  # a store written by an earlier version
                    db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            with db:
                yield db
        finally:
            db.close()

    def begin(self, config: RunConfig) -> None:
        """Record a run as running (again, if it was interrupted or failed before)."""
        with self._connect() as db:
            db.execute(
                """INSERT INTO runs (run_id, status, created_at, config, setting_key, dataset, model, strategy,
                                     method, budget, epochs, seed, label_noise)
                   VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status = 'running', message = NULL""",
                (config.run_id, _now(), config.model_dump_json(), config.setting_key, config.dataset,
                 config.model, config.strategy, config.method_label, config.train.budget, config.train.epochs,
                 config.seed, config.label_noise),
            )

    def fail(self, config: RunConfig, message: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET status = 'failed', finished_at = ?, message = ? WHERE run_id = ?",
                       (_now(), message, config.run_id))

    def finish(self, config: RunConfig, result: TrainResult, noise_mask: torch.Tensor | None = None,
               example_scores: dict[str, torch.Tensor] | None = None) -> None:
        """Store the outcome, every evaluation point and every selection round of a run, and per-example
        scores recorded during training (e.g. forgetting counts), one float per training example."""
        t = result.timings
        with self._connect() as db:
            db.execute(
                """UPDATE runs SET status = 'done', finished_at = ?, test_accuracy = ?, test_loss = ?, steps = ?,
                       examples = ?, selection_forward_examples = ?, selection_s = ?, training_s = ?,
                       evaluation_s = ?, forward_s_per_example = ?, message = NULL WHERE run_id = ?""",
                (_now(), result.test_accuracy, result.test_loss, result.steps, result.examples,
                 result.selection_forward_examples, t.selection, t.training, t.evaluation,
                 result.forward_s_per_example, config.run_id),
            )
            db.execute("DELETE FROM evaluations WHERE run_id = ?", (config.run_id,))
            db.executemany(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(config.run_id, r.step, r.examples, r.test_accuracy, r.test_loss, r.train_loss, r.selection_s,
                  r.training_s, r.evaluation_s, json.dumps(r.extras)) for r in result.history],
            )
            db.execute("DELETE FROM selections WHERE run_id = ?", (config.run_id,))
            rows = []
            for i, sel in enumerate(result.selections):
                noisy = None if noise_mask is None else float(noise_mask[sel.indices].float().mean())
                weights = None if sel.weights is None else sel.weights.numpy().astype(np.float32).tobytes()
                rows.append((config.run_id, i, sel.step, len(sel.indices), noisy,
                             sel.indices.numpy().astype(np.int64).tobytes(), weights))
            db.executemany("INSERT INTO selections VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("DELETE FROM example_scores WHERE run_id = ?", (config.run_id,))
            db.executemany(
                "INSERT INTO example_scores VALUES (?, ?, ?)",
                [(config.run_id, name, values.detach().cpu().numpy().astype(np.float32).tobytes())
                 for name, values in (example_scores or {}).items()],
            )

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[StoredRun]:
        with self._connect() as db:
            rows = db.execute(
                f"""SELECT run_id, status, config, test_accuracy, selection_s, training_s, evaluation_s, steps,
                           examples, selection_forward_examples, message, forward_s_per_example FROM runs {where}
                    ORDER BY created_at""",
                args,
            ).fetchall()
        return [StoredRun(r[0], r[1], RunConfig.model_validate_json(r[2]), *r[3:]) for r in rows]

    def runs(self, status: str | None = None) -> list[StoredRun]:
        return self._rows("WHERE status = ?", (status,)) if status else self._rows()

    def get(self, run_id: str) -> StoredRun | None:
        rows = self._rows("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def evaluations(self, run_id: str) -> list[EvalRecord]:
        with self._connect() as db:
            rows = db.execute(
                """SELECT step, examples, test_accuracy, test_loss, train_loss, selection_s, training_s,
                          evaluation_s, extras FROM evaluations WHERE run_id = ? ORDER BY step""", (run_id,)
            ).fetchall()
        return [EvalRecord(*r[:-1], extras=json.loads(r[-1])) for r in rows]

    def selections(self, run_id: str) -> list[dict[str, Any]]:
        """Each selection round: step, indices (int64 tensor), weights (float tensor or None), noisy share."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT step, indices, weights, noisy_share FROM selections WHERE run_id = ? ORDER BY round",
                (run_id,),
            ).fetchall()
        return [
            {
                "step": step,
                "indices": torch.from_numpy(np.frombuffer(idx, dtype=np.int64).copy()),
                "weights": None if w is None else torch.from_numpy(np.frombuffer(w, dtype=np.float32).copy()),
                "noisy_share": noisy,
            }
            for step, idx, w, noisy in rows
        ]

    def example_scores(self, run_id: str, name: str) -> torch.Tensor | None:
        """The per-example scores ``name`` a run recorded (float32, one per training example), or None."""
        with self._connect() as db:
            row = db.execute("SELECT scores FROM example_scores WHERE run_id = ? AND name = ?",
                             (run_id, name)).fetchone()
        return None if row is None else torch.from_numpy(np.frombuffer(row[0], dtype=np.float32).copy())


__all__ = ["ResultStore", "StoredRun"]
