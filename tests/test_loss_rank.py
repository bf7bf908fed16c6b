"""Rank-based selection by the training steps' losses: its probabilities against the paper's formula computed
independently, random order among ties and unseen examples first, passes of exactly the budget drawn without
replacement and leaning to high losses as the probabilities say, no selection forward, and an interrupted run
resuming to the uninterrupted result (the error in a loop that records nothing: tests/test_infobatch.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from coreselect.models import create_model
from coreselect.strategies import Budget, Context, create_strategy
from coreselect.strategies.loss_rank import rank_probabilities
from coreselect.train import TrainConfig, Trainer
from test_trainer import _data, interrupted_and_resumed


def test_probabilities_fall_exponentially_in_the_rank_of_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(50, generator=g, dtype=torch.float64)
    probabilities = rank_probabilities(scores, 100.0, g)
    # independently: rank by Python's sort, the paper's p_r ∝ (1 / exp(ln(s_e) / N))^r, normalised
    ranks = {i: r for r, i in enumerate(sorted(range(50), key=lambda i: -float(scores[i])))}
    raw = [(1 / math.exp(math.log(100.0) / 50)) ** ranks[i] for i in range(50)]
    expected = torch.tensor([v / sum(raw) for v in raw], dtype=torch.float64)
    torch.testing.assert_close(probabilities, expected)
    highest, lowest = int(scores.argmax()), int(scores.argmin())
    assert float(probabilities[highest] / probabilities[lowest]) == pytest.approx(100.0 ** (49 / 50))
    assert torch.allclose(rank_probabilities(scores, 1.0, g), torch.full((50,), 1 / 50, dtype=torch.float64))


def test_ties_are_ranked_in_random_order_and_unseen_examples_first() -> None:
    data = _data(0)
    ctx = Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.25, 4, 400, 50))
    strategy = create_strategy("loss-rank")
    strategy.setup(ctx)
    seen = torch.arange(100, 400)  # the first 100 never trained on
    ctx.training_signals.record(seen, torch.zeros(300, 4), data.targets[seen], torch.rand(300), step=0)
    probabilities = rank_probabilities(strategy.step_losses(unseen=math.inf), 100.0, strategy.generator)
    assert probabilities[:100].min() > probabilities[100:].max()  # unseen: the 100 highest ranks
    ties = [rank_probabilities(torch.zeros(400), 100.0, torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    assert not torch.equal(ties[0], ties[1])  # all equal: the order comes from the generator, not the index
    assert torch.equal(ties[0].sort().values, ties[1].sort().values)


def test_passes_draw_the_budget_without_replacement_leaning_to_high_losses() -> None:
    data = _data(0)
    ctx = Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.25, 4, 400, 50))
    strategy = create_strategy("loss-rank", pressure=20.0)
    strategy.setup(ctx)
    losses = torch.linspace(2.0, 0.0, 400)  # example i has rank i
    ctx.training_signals.record(torch.arange(400), torch.zeros(400, 4), data.targets, losses, step=0)
    counts = torch.zeros(400)
    draws = 400
    for epoch in range(draws):
        selection = strategy.select(epoch)
        assert selection.weights is None and len(torch.unique(selection.indices)) == 100 == len(selection.indices)
        counts[selection.indices] += 1
    # independently: numpy's successive sampling without replacement from the same probabilities
    probabilities = rank_probabilities(losses, 20.0, torch.Generator()).numpy()
    rng = np.random.default_rng(0)
    reference = np.zeros(400)
    for _ in range(draws):
        reference[rng.choice(400, size=100, replace=False, p=probabilities / probabilities.sum())] += 1
    for tenth in (slice(0, 40), slice(180, 220), slice(360, 400)):  # top, middle and bottom tenths by loss
        assert float(counts[tenth].mean()) / draws == pytest.approx(reference[tenth].mean() / draws, abs=0.03)
    assert counts[:40].mean() > 3 * counts[-40:].mean()  # the highest losses drawn far more often


def _trainer(checkpoint: Path | None = None, callbacks=()) -> Trainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = TrainConfig(epochs=8, budget=0.3, batch_size=16, lr=0.05, eval_points=4)
    return Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("loss-rank"), _data(0), _data(1), config,
                   checkpoint_path=checkpoint, callbacks=callbacks, progress_bar=False)


def test_a_run_forwards_nothing_for_selection_and_spends_exactly_its_budget() -> None:
    trainer = _trainer()
    result = trainer.fit()
    size = trainer.budget.epoch_examples
    assert result.selection_forward_examples == 0
    assert result.examples == trainer.budget.total_examples
    assert [len(torch.unique(r.indices)) for r in result.selections] == [size] * trainer.config.epochs
    # after the first pass the draws follow the losses: the cache's high-loss half is drawn more than the low half
    later = torch.cat([r.indices for r in result.selections[1:]])
    losses = trainer.context.training_signals.loss
    high = losses >= losses.nanmedian()
    assert int(high[later].sum()) > int((~high)[later].sum())


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    straight, resumed = interrupted_and_resumed(_trainer, tmp_path / "run.pt")
    assert resumed.strategy.trained == straight.strategy.trained  # type: ignore[attr-defined]
