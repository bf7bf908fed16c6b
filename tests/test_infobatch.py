"""The training-signal cache and InfoBatch: the cache holds what the steps computed, InfoBatch's weighted
gradient is unbiased over its random pruning, it forwards nothing for selection, its budgeted form spends
exactly the budget, and an interrupted run resumes to the uninterrupted result."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.strategies import STRATEGIES, Batch, create_strategy
from coreselect.strategies.infobatch import prune, prune_to_budget
from coreselect.train import Callback, TrainConfig, Trainer
from test_trainer import _data, interrupted_and_resumed


class _Capture(Callback):
    def __init__(self) -> None:
        self.steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_step_end(self, trainer: Trainer, batch: Batch, out) -> None:  # type: ignore[no-untyped-def]
        self.steps.append((batch.indices.clone(), out.logits.clone(), out.losses.clone()))


def _trainer(params: dict, checkpoint: Path | None = None, callbacks=(), **cfg) -> Trainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = TrainConfig(**{"epochs": 8, "budget": 0.5, "batch_size": 16, "lr": 0.05, "eval_points": 4, **cfg})
    return Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("infobatch", **params), _data(0), _data(1),
                   config, checkpoint_path=checkpoint, callbacks=callbacks, progress_bar=False)


def test_the_cache_holds_each_examples_latest_training_loss_norm_and_step() -> None:
    capture = _Capture()
    trainer = _trainer({}, callbacks=[capture])
    trainer.fit()
    signals = trainer.context.training_signals
    targets = trainer.train_data.targets
    expected_loss = torch.full((len(targets),), float("nan"))
    expected_norm = torch.full((len(targets),), float("nan"))
    expected_step = torch.full((len(targets),), -1)
    for step, (indices, logits, losses) in enumerate(capture.steps):  # in order: the latest step wins
        expected_loss[indices] = losses
        p_minus_y = torch.softmax(logits.double(), 1) - F.one_hot(targets[indices], 4).double()
        expected_norm[indices] = p_minus_y.norm(dim=1).float()
        expected_step[indices] = step
    # the step's losses are the cross-entropy of its logits: checked independently of the trainer
    indices, logits, losses = capture.steps[-1]
    torch.testing.assert_close(losses, F.cross_entropy(logits, targets[indices], reduction="none"))
    torch.testing.assert_close(signals.loss, expected_loss, equal_nan=True)
    torch.testing.assert_close(signals.grad_norm, expected_norm, equal_nan=True)
    assert torch.equal(signals.step, expected_step) and signals.steps_recorded == len(capture.steps)
    assert 0 < int(signals.seen().sum()) <= len(targets)


@pytest.mark.parametrize("form", ["official", "budgeted"])
def test_expected_weighted_gradient_is_the_full_data_gradient(form: str) -> None:
    g = torch.Generator().manual_seed(0)
    n = 60
    scores = torch.rand(n, generator=g) ** 3  # skewed: about two thirds below the mean
    gradients = torch.randn(n, 5, generator=g, dtype=torch.float64)  # any per-example gradients
    full = gradients.sum(0)
    draws = 20000
    size = 25  # budgeted: fewer than the at-or-above-mean examples and half the below-mean ones
    estimates = torch.empty(draws, 5, dtype=torch.float64)
    for i in range(draws):
        selection = prune(scores, 0.5, g) if form == "official" else prune_to_budget(scores, size, 0.5, g)
        estimates[i] = (selection.weights.double()[:, None] * gradients[selection.indices]).sum(0)
        if form == "budgeted":
            assert len(selection.indices) == size and len(set(selection.indices.tolist())) == size
    # the official form estimates the full sum; the budgeted one, with mean-1 weights, size/n of it
    expected = full if form == "official" else full * size / n
    standard_error = estimates.std(0) / math.sqrt(draws)
    assert ((estimates.mean(0) - expected).abs() < 4 * standard_error).all()
    # without the rescaling the estimate is biased by far more than the Monte-Carlo error
    hard, well = scores >= scores.mean(), scores < scores.mean()
    if form == "official":
        unweighted = gradients[hard].sum(0) + 0.5 * gradients[well].sum(0)
    else:
        share = size / (int(hard.sum()) + 0.5 * int(well.sum()))
        unweighted = share * gradients[hard].sum(0) + 0.5 * share * gradients[well].sum(0)
    assert ((unweighted - expected).abs() > 10 * standard_error).any()


def test_budgeted_weights_stay_within_the_official_rescale_whatever_the_budget() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(1000, generator=g) ** 4  # few examples above the mean
    hard = int((scores >= scores.mean()).sum())
    for size in (10, hard - 5, hard + 3, hard + 20, 400, 1000):
        selection = prune_to_budget(scores, size, 0.5, g)
        assert len(selection.indices) == size and math.isclose(float(selection.weights.mean()), 1.0, rel_tol=1e-5)
        counts = torch.unique(selection.weights, return_counts=True)[1]
        rounding = 1 + 2 / int(counts.min())  # the kept counts are whole numbers
        assert float(selection.weights.max() / selection.weights.min()) <= 2.0 * rounding


def test_infobatch_forwards_nothing_for_selection_and_the_budgeted_form_spends_exactly_its_budget(
        npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    common = {"dataset": "npz", "data_root": str(npz_root), "model": "mlp", "strategy": "infobatch"}
    for params in ({}, {"budgeted": True}):
        config = RunConfig.create(params=params, train={"epochs": 6, "budget": 0.3, "batch_size": 16,
                                                        "eval_points": 2}, **common)
        run = run_experiment(config, store, progress_bar=False)
        assert run.selection_forward_examples == 0
        assert run.examples == round(0.3 * 6 * 600)  # the trainer spends exactly the budget
    trainer = _trainer({"budgeted": True})
    result = trainer.fit()
    size = trainer.budget.epoch_examples
    assert [len(r.indices) for r in result.selections] == [size] * trainer.config.epochs
    assert result.examples == trainer.budget.total_examples
    weighted = [r for r in result.selections if r.weights is not None and (r.weights > 1).any()]
    assert weighted and all(len(torch.unique(r.indices)) == size for r in result.selections)
    assert result.selections[-1].weights is None  # annealing: the last compressed epoch is unweighted


@pytest.mark.parametrize("params", [{}, {"budgeted": True}, {"drop_hardest": "auto"}])
def test_interrupted_infobatch_run_resumes_to_the_same_result(tmp_path: Path, params: dict) -> None:
    straight, resumed = interrupted_and_resumed(lambda **kw: _trainer(params, **kw), tmp_path / "run.pt")
    assert torch.equal(resumed.context.training_signals.loss.nan_to_num(-1),
                       straight.context.training_signals.loss.nan_to_num(-1))
    assert resumed.strategy.estimated_share == straight.strategy.estimated_share  # type: ignore[attr-defined]
    assert (straight.strategy.estimated_share is not None) == (params.get("drop_hardest") == "auto")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "params"), [(name, {}) for name, spec in STRATEGIES.items()
                                               if spec.reads_training_signals] +
                         [("train-loss", {"reuse_within": 1000}), ("rho-loss", {"reuse_within": 1000})])
def test_a_strategy_reading_the_cache_in_a_loop_that_records_nothing_gets_a_clear_error(name: str,
                                                                                        params: dict) -> None:
    from coreselect.strategies import Budget, Context, StepOutput

    data = _data(0)
    strategy = create_strategy(name, **params)
    if name == "rho-loss":
        strategy.holdout_logits = torch.zeros(len(data), 4)  # type: ignore[attr-defined]
    strategy.setup(Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.5, 4, 400, 50)))
    stream = strategy.batches()
    batch = next(stream)  # nothing trained yet: no error
    with pytest.raises(Exception, match=r"ctx.signals.record"):
        for _ in range(20):  # steps observed but never recorded in the cache
            strategy.observe(batch, StepOutput(0, torch.zeros(len(batch), 4), torch.zeros(len(batch))))
            batch = next(stream)


@pytest.mark.parametrize("budgeted", [False, True])
def test_drop_hardest_leaves_the_highest_losses_of_the_scored_examples_out_of_the_pass(budgeted: bool) -> None:
    from coreselect.strategies import Budget, Context

    data, g = _data(0), torch.Generator().manual_seed(0)
    ctx = Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.5, 4, 400, 50))
    strategy = create_strategy("infobatch", drop_hardest=0.25, budgeted=budgeted)
    strategy.setup(ctx)
    size = 200 if budgeted else 400
    assert len(torch.unique(strategy.select(0).indices)) == size  # nothing scored yet: nothing sits out
    scored = torch.randperm(400, generator=g)[:240]
    losses = torch.rand(240, generator=g)
    ctx.training_signals.record(scored, torch.zeros(240, 4), data.targets[scored], losses, step=0)
    hardest = scored[losses.argsort(descending=True)]  # brute force: the scored examples by falling loss
    selection = strategy.select(1)
    assert not torch.isin(hardest[:60], selection.indices).any()  # a quarter of the 240 scored sit out
    if budgeted:
        assert len(torch.unique(selection.indices)) == 200
    else:  # the rest is the official pass on the pool: everything at or above the pool's mean kept
        pool = torch.ones(400, dtype=torch.bool)
        pool[hardest[:60]] = False
        scores = torch.full((400,), 3.0)
        scores[scored] = losses
        above = torch.nonzero(pool & (scores >= scores[pool].mean())).squeeze(1)
        assert torch.isin(above, selection.indices).all()
        assert torch.isin(hardest[60:], selection.indices).sum() < 180  # part of the below-mean rest pruned
    greedy = create_strategy("infobatch", drop_hardest=0.9, budgeted=True)  # 216 would leave a pass short
    greedy.setup(ctx)
    kept = greedy.select(1).indices
    assert len(torch.unique(kept)) == 200 and not torch.isin(hardest[:200], kept).any()


def test_auto_drop_share_is_estimated_once_after_a_sets_worth_of_training_as_the_below_chance_share() -> None:
    from coreselect.strategies import Budget, Context

    data, g = _data(0), torch.Generator().manual_seed(1)
    ctx = Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.5, 4, 400, 50))
    strategy = create_strategy("infobatch", drop_hardest="auto", prune_ratio=0.0)  # a pass is its whole pool
    strategy.setup(ctx)
    scored = torch.randperm(400, generator=g)[:240]
    losses = 3 * torch.rand(240, generator=g)  # about half above ln 4
    ctx.training_signals.record(scored, torch.zeros(240, 4), data.targets[scored], losses, step=0)
    strategy.trained = 400  # a set's worth trained, not more: nobody sits out yet
    assert len(torch.unique(strategy.select(1).indices)) == 400 and strategy.estimated_share is None
    strategy.trained = 401
    below_chance = int((losses > math.log(4)).sum())  # the label's probability under 1/4, brute force
    hardest = scored[losses.argsort(descending=True)]

    def out_of(selection_indices: torch.Tensor) -> torch.Tensor:
        return torch.tensor(sorted(set(range(400)) - set(selection_indices.tolist())))

    out = out_of(strategy.select(2).indices)
    assert strategy.estimated_share == pytest.approx(below_chance / 240)
    assert len(out) in (below_chance - 1, below_chance)  # ⌊β·240⌋, β = below_chance / 240 in floating point
    assert torch.equal(out, hardest[: len(out)].sort().values)  # exactly the highest losses
    # estimated once: with every loss now under ln 4, the same share of the scored examples still sits out
    ctx.training_signals.record(scored, torch.zeros(240, 4), data.targets[scored], losses / 10, step=1)
    assert torch.equal(out_of(strategy.select(3).indices), out)
    assert strategy.estimated_share == pytest.approx(below_chance / 240)


@pytest.mark.parametrize("drop", [0.0, 0.3, "auto"])
def test_under_label_noise_the_dropped_share_is_mostly_the_mislabelled_examples(drop: float | str) -> None:
    from coreselect.data import InMemoryDataset
    from coreselect.data.corruption import add_label_noise

    clean = _data(0)
    noisy = add_label_noise(clean.targets, 4, 0.3, "symmetric", seed=0)
    flipped = noisy != clean.targets
    torch.manual_seed(0)
    config = TrainConfig(epochs=8, budget=0.5, batch_size=16, lr=0.05, eval_points=2)
    trainer = Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("infobatch", drop_hardest=drop),
                      InMemoryDataset(clean.inputs, noisy, 4), _data(1), config, progress_bar=False)
    later = trainer.fit().selections[3:]  # once the model has learned the blobs' classes
    share = float(torch.cat([flipped[r.indices] for r in later]).float().mean())
    # the blobs are separable, so once learned the mislabelled examples have the highest losses: leaving 30 % out
    # removes most of them (a random 30 % would leave the share at 0.3); without it InfoBatch keeps all of them
    # (above the mean) and prunes clean ones
    assert share < 0.2 if drop else share > float(flipped.float().mean())
    if drop == "auto":  # about the noise's share (0.3): after a set's worth of steps a few clean ones still lag
        assert 0.25 <= trainer.strategy.estimated_share <= 0.4  # type: ignore[attr-defined]


def test_auto_drop_share_on_clean_labels_is_small() -> None:
    trainer = _trainer({"drop_hardest": "auto"})
    trainer.fit()
    assert trainer.strategy.estimated_share is not None and trainer.strategy.estimated_share < 0.05  # type: ignore[attr-defined]
