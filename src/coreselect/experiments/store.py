"""The results store: every run, its evaluations and its selections, in one SQLite file."""

from __future__ import annotations

import io
import json
import os
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
from pydantic import ValidationError

from coreselect.errors import InvalidInputError
from coreselect.experiments.config import RunConfig
from coreselect.train.trainer import EvalRecord, TrainResult

SCHEMA_VERSION = 4
# Columns added after version 1: (name, SQL type); a store of an earlier version gains them when opened.
ADDED_COLUMNS = {2: [("forward_s_per_example", "REAL")]}
# Version 3 adds the status 'interrupted' (a run stopped by the user or a killed benchmark; re-run to resume);
# version 4 the table of records (what a report draws that is not a number per run: class counts, figures' data).
STATUSES = ("running", "done", "failed", "interrupted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
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
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
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


def _writable(path: Path) -> bool:
    """Whether this process can write the file and its folder (SQLite writes journals beside the file)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class ResultStore:
    """A SQLite database of runs; safe to open from several processes (WAL journal)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open (or create) the store at ``path``; ``read_only`` opens an existing one without writing to it
        (a store on a read-only disk, or one being written by a running benchmark)."""
        self.path = Path(path)
        self.read_only = read_only
        if self.path.is_dir():
            raise InvalidInputError(f"results store {self.path} is a folder; pass a file path such as "
                                    f"{self.path / 'runs.db'}")
        if read_only:
            if not self.path.is_file():
                raise InvalidInputError(f"no results store at {self.path}")
            self._check_version(self._read_version())
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # creating the file and switching it to WAL must not race with another process doing the same
            with FileLock(self.path.parent / f"{self.path.name}.lock"):
                self._migrate()
        except PermissionError as err:
            raise InvalidInputError(f"cannot write the results store {self.path} ({err.strerror}: {err.filename}): "
                                    "it or its folder is read-only; pass a --store in a folder you can write") from err
        except sqlite3.DatabaseError as err:
            raise self._unreadable(err) from err

    @classmethod
    def for_reading(cls, path: str | Path) -> ResultStore:
        """The store at ``path`` opened to read: upgraded in place if it can be written, else read-only."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"no results store at {path}; run `coreselect train ... --store {path}` first")
        return cls(path, read_only=not _writable(path))

    def _unreadable(self, err: sqlite3.Error) -> InvalidInputError:
        if "locked" in str(err) or "busy" in str(err):
            return InvalidInputError(f"results store {self.path} stayed locked by another process for 30 s ({err}); "
                                     "wait for it, or use another --store")
        if "readonly" in str(err) or "read-only" in str(err):
            return InvalidInputError(f"results store {self.path} is read-only ({err}); pass a --store you can "
                                     "write, or make it writable")
        return InvalidInputError(f"{self.path} is not a coreselect results store ({err}); pass another --store "
                                 "or move the file away")

    def _read_version(self) -> int:
        try:
            with self._connect() as db:
                return db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise self._unreadable(err) from err

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InvalidInputError(f"{self.path} has schema version {version}; this coreselect reads "
                                    f"{SCHEMA_VERSION} and earlier: upgrade coreselect")
        if self.read_only and version < SCHEMA_VERSION:
            raise InvalidInputError(f"{self.path} was written by an earlier coreselect (schema {version}); open "
                                    "it once where it can be written to upgrade it")

    def _migrate(self) -> None:
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            db.executescript(SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for name, kind in (column for columns in ADDED_COLUMNS.values() for column in columns):
                if name not in present:  # a store written by an earlier version
                    db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            table_sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        if "'interrupted'" not in table_sql:
            self._rebuild_runs_table()
        with self._connect() as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _rebuild_runs_table(self) -> None:
        """Re-create ``runs`` under today's schema (SQLite cannot alter a CHECK), rows and children kept."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA foreign_keys = OFF")  # dropping the old table must not cascade to its children
            with db:
                columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(runs)"))
                runs_sql = SCHEMA[:SCHEMA.index(");") + 2].replace("IF NOT EXISTS runs", "runs_v3")
                db.execute(runs_sql)
                db.execute(f"INSERT INTO runs_v3 ({columns}) SELECT {columns} FROM runs")
                db.execute("DROP TABLE runs")  # children keep naming "runs", which the renamed table becomes
                db.execute("ALTER TABLE runs_v3 RENAME TO runs")
        finally:
            db.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:  # a store nobody here can write is read as it is, without locks
            immutable = "&immutable=1" if not _writable(self.path) else ""
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro{immutable}", uri=True, timeout=30)
        else:
            db = sqlite3.connect(self.path, timeout=30)
        try:
            if not self.read_only:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            with db:
                yield db
        except sqlite3.DatabaseError as err:  # a damaged, foreign or read-only file: say so in one line
            raise self._unreadable(err) from err
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

    def interrupt(self, run_ids: list[str]) -> None:
        """Mark running runs as interrupted (their checkpoints stay: re-running resumes them)."""
        with self._connect() as db:
            db.executemany("UPDATE runs SET status = 'interrupted' WHERE run_id = ? AND status = 'running'",
                           [(run_id,) for run_id in run_ids])

    def fail(self, config: RunConfig, message: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET status = 'failed', finished_at = ?, message = ? WHERE run_id = ?",
                       (_now(), message, config.run_id))

    def finish(self, config: RunConfig, result: TrainResult, noise_mask: torch.Tensor | None = None,
               example_scores: dict[str, torch.Tensor] | None = None,
               records: dict[str, dict[str, Any]] | None = None) -> None:
        """Store the outcome, every evaluation point and every selection round of a run, per-example scores
        recorded during training (e.g. forgetting counts, one float per training example) and named records
        (dicts of tensors, numbers, strings and lists: what reports draw besides numbers)."""
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
            db.execute("DELETE FROM records WHERE run_id = ?", (config.run_id,))
            db.executemany("INSERT INTO records VALUES (?, ?, ?)",
                           [(config.run_id, name, _serialised(value)) for name, value in (records or {}).items()])

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[StoredRun]:
        with self._connect() as db:
            rows = db.execute(
                f"""SELECT run_id, status, config, test_accuracy, selection_s, training_s, evaluation_s, steps,
                           examples, selection_forward_examples, message, forward_s_per_example FROM runs {where}
                    ORDER BY created_at""",
                args,
            ).fetchall()
        try:
            return [StoredRun(r[0], r[1], RunConfig.model_validate_json(r[2]), *r[3:]) for r in rows]
        except ValidationError as err:
            raise InvalidInputError(f"results store {self.path} holds a damaged run configuration ({err.title}: "
                                    f"{err.errors()[0]['msg']}); move the file away or pass another --store") from err

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

    def record(self, run_id: str, name: str) -> dict[str, Any] | None:
        """The record ``name`` a run stored when it finished, or None."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM records WHERE run_id = ? AND name = ?", (run_id, name)).fetchone()
        return None if row is None else torch.load(io.BytesIO(row[0]), weights_only=True)


def _serialised(value: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


__all__ = ["ResultStore", "StoredRun"]
