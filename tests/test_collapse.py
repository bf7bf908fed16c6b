"""Collapse: a run whose test accuracy falls back to chance after it had learned is found, warned about,
stored and marked in the report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.report.tables import answers, format_table, summarise_store
from coreselect.strategies import create_strategy
from coreselect.train import Callback, EvalRecord, TrainConfig, Trainer
from coreselect.train.collapse import COLLAPSE, chance_accuracy, find_collapse


def _history(accuracies: list[float]) -> list[EvalRecord]:
    return [EvalRecord(step=10 * (i + 1), examples=0, test_accuracy=a, test_loss=0.0, train_loss=0.0,
                       selection_s=0.0, training_s=0.0, evaluation_s=0.0) for i, a in enumerate(accuracies)]


def test_the_first_fall_to_chance_after_learning_is_found_as_a_direct_scan_finds_it() -> None:
    chance = 0.25  # learned: 0.625 or more; near chance: 0.325 or less
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(400):
        accs = rng.choice([0.2, 0.3, 0.33, 0.5, 0.6, 0.63, 0.9], size=int(rng.integers(1, 8))).tolist()
        history = _history(accs)
        best_before = np.maximum.accumulate([0.0, *accs[:-1]])  # best accuracy before each evaluation
        hits = [i for i, a in enumerate(accs) if best_before[i] >= 0.625 and a <= 0.325]
        collapse = find_collapse(history, chance)
        if not hits:
            assert collapse is None, accs
            continue
        found += 1
        first = hits[0]
        assert collapse is not None and collapse.step == history[first].step and collapse.accuracy == accs[first]
        assert collapse.peak_accuracy == max(accs[:first]) and collapse.chance == chance
        assert collapse.peak_step == history[accs.index(max(accs[:first]))].step  # the first time it was best
    assert found > 50  # the random histories exercised both outcomes


def test_chance_is_what_predicting_the_most_common_test_label_scores() -> None:
    targets = torch.tensor([0, 2, 2, 1, 2, 0, 2, 3])
    assert chance_accuracy(targets) == pytest.approx(4 / 8)
    assert find_collapse(_history([0.9, 0.5]), chance=0.5) is not None  # a constant classifier here scores 50 %
    assert find_collapse(_history([0.9, 0.5]), chance=0.1) is None


class _KillHiddenUnits(Callback):
    """From ``step`` on, a hidden layer whose units are all dead: the network can only predict one class and no
    gradient reaches the layers before (the way SGD blown up at the learning-rate peak leaves a ReLU network)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, batch, out) -> None:  # type: ignore[no-untyped-def]
        if trainer.state.step == self.step:  # the trainer counts a step before its callbacks run
            with torch.no_grad():
                trainer.model.body[1].bias.fill_(-1e4)


def _trainer(callbacks: list[Callback]) -> Trainer:
    torch.manual_seed(0)
    data = [InMemoryDataset(*map(torch.from_numpy, make_blobs(400, seed=seed)), 4) for seed in (0, 1)]
    config = TrainConfig(epochs=8, budget=0.5, batch_size=32, lr=0.05, eval_points=8)
    return Trainer(create_model("mlp", (1, 8, 8), 4), create_strategy("random"), data[0], data[1], config,
                   callbacks=callbacks, progress_bar=False)


def test_the_trainer_warns_once_where_a_run_falls_back_to_chance_and_returns_where(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="coreselect"):
        healthy = _trainer([]).fit()
    assert healthy.collapse is None and healthy.test_accuracy > 0.9 and "diverged" not in caplog.text
    trainer = _trainer([_KillHiddenUnits(step=30)])  # 13 steps per pass of 400 at batch 32, 52 in all
    with caplog.at_level(logging.WARNING, logger="coreselect"):
        result = trainer.fit()
    first_after = next(r for r in result.history if r.step >= 30)
    assert result.collapse is not None and result.collapse.step == first_after.step
    assert result.collapse.peak_accuracy == max(r.test_accuracy for r in result.history if r.step < 30) > 0.9
    assert result.collapse.chance == chance_accuracy(trainer.test_data.targets)
    assert result.test_accuracy <= result.collapse.chance
    assert caplog.text.count("diverged") == 1 and "clip_norm" in caplog.text


def test_a_collapsed_run_is_stored_and_marked_in_the_report(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    records = []
    for seed, callbacks in ((0, [_KillHiddenUnits(step=40)]), (1, [])):
        config = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="random", seed=seed,
                                  train={"epochs": 6, "budget": 0.5, "batch_size": 32, "lr": 0.05, "eval_points": 6})
        run = run_experiment(config, store, progress_bar=False, callbacks=callbacks)
        records.append(store.record(run.run_id, COLLAPSE))
    collapsed, healthy = records
    assert healthy is None and collapsed is not None and collapsed["step"] >= 40
    assert collapsed["accuracy"] <= collapsed["chance"] < collapsed["peak_accuracy"]
    (row,) = summarise_store(store)
    assert row.seeds == 2 and row.collapsed == 1
    assert "(1 collapsed)" in format_table([row])
    assert "(1 collapsed)" in answers([row]) and "fell back to chance" in answers([row])
