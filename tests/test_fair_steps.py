"""Equal optimizer steps at equal budget: every strategy trains on batches of the run's batch size, so no family
gets more steps (and so more accuracy) than random from the same budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.strategies import STRATEGIES

BUDGET, EPOCHS = 0.2, 5


def _run(name: str, npz_root: Path, store: ResultStore, batch_size: int):  # type: ignore[no-untyped-def]
    config = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy=name, val_fraction=0.1,
                              holdout_fraction=0.3, train={"epochs": EPOCHS, "budget": BUDGET,
                                                           "batch_size": batch_size, "eval_points": 1,
                                                           "optimizer": "adamw", "lr": 1e-3})
    return run_experiment(config, store, progress_bar=False)


@pytest.mark.parametrize("batch_size", [8, 32])  # 32: a random subset of 1 % of the pool is smaller than a batch
def test_every_strategy_takes_randoms_steps_at_the_same_budget_and_batch_size(npz_root: Path, tmp_path: Path,
                                                                              batch_size: int) -> None:
    store = ResultStore(tmp_path / "runs.db")
    random = _run("random", npz_root, store, batch_size)
    assert random.steps is not None and random.examples is not None
    every_batch_full = math.ceil(random.examples / batch_size)
    assert random.steps > every_batch_full  # random's last batch of each compressed epoch is truncated
    steps = {name: _run(name, npz_root, store, batch_size).steps
             for name in STRATEGIES if not STRATEGIES[name].full_data}
    # within 5 % of random's steps, the truncated last batch of random's compressed epochs aside: between
    # every batch full and random's count
    low, high = 0.95 * every_batch_full, 1.05 * random.steps
    off = {name: s for name, s in steps.items() if s is None or not low <= s <= high}
    assert not off, f"random took {random.steps} steps ({every_batch_full} with every batch full); off: {off}"


def test_online_strategies_score_batch_size_over_ratio_candidates(npz_root: Path, tmp_path: Path) -> None:
    from coreselect.data import load_dataset
    from coreselect.models import create_model
    from coreselect.strategies import Batch, Budget, Context, create_strategy

    data = load_dataset("npz", str(npz_root))
    model = create_model("mlp", data.train.input_shape, data.train.num_classes)
    strategy = create_strategy("train-loss", selection_ratio=0.25)
    strategy.setup(Context(model=model, train=data.train, budget=Budget(0.1, 2, len(data.train), 12)))
    batch: Batch = next(strategy.batches())
    assert len(batch) == 12 and strategy.context.log.forward_examples == 48
    with pytest.raises(Exception, match="selection_ratio"):
        create_strategy("train-loss", selection_ratio=0.0)
