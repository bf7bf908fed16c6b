"""The budgeted trainer: learning, budget accounting, weighted loss, schedules, resume, NaN handling."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.errors import NonFiniteLossError
from coreselect.models import create_model
from coreselect.strategies import Batch, EpochStrategy, Selection, StepOutput, create_strategy
from coreselect.train import Callback, TrainConfig, Trainer, lr_factor
from coreselect.train.checkpoint import load_checkpoint


def _data(seed: int) -> InMemoryDataset:
    x, y = make_blobs(400, seed=seed)
    return InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)


def _trainer(strategy_name: str = "random", checkpoint: Path | None = None, callbacks=(), **cfg) -> Trainer:
    torch.manual_seed(0)
    model = create_model("cnn", (1, 8, 8), 4)
    config = TrainConfig(**{"epochs": 4, "budget": 0.5, "batch_size": 32, "lr": 0.05, "eval_points": 4, **cfg})
    return Trainer(model, create_strategy(strategy_name), _data(0), _data(1), config, checkpoint_path=checkpoint,
                   callbacks=callbacks, progress_bar=False)


def test_learns_and_spends_exactly_the_budget() -> None:
    trainer = _trainer("random", epochs=6)
    result = trainer.fit()
    assert result.test_accuracy > 0.9
    assert result.examples == round(0.5 * 6 * 400) == trainer.budget.total_examples
    # 200 examples per compressed epoch in batches of 32: 6 full batches and one of 8, for 6 epochs
    assert result.steps == 6 * 7
    assert len(result.history) == 4 and result.history[-1].examples == result.examples
    t = result.timings
    assert min(t.selection, t.training, t.evaluation) > 0 and math.isclose(t.total, t.selection + t.training
                                                                            + t.evaluation)
    assert len(result.selections) == 6
    # strategies read the configured (peak) LR beside the schedule's current one, near 0 at the end
    assert trainer.context.peak_learning_rate == 0.05 > 100 * trainer.context.learning_rate


def test_full_strategy_with_odd_budget_truncates_the_last_batch() -> None:
    result = _trainer("full", budget=0.37, epochs=1).fit()
    assert result.examples == round(0.37 * 400)


class _Weighted(EpochStrategy):
    name = "weighted-test"
    needs_step_gradient = True  # NeedsStepGradient: the trainer hands each step's gradient

    def __init__(self) -> None:
        super().__init__()
        self.gradients: list[list[torch.Tensor] | None] = []

    def select(self, epoch: int) -> Selection | None:
        return Selection(torch.arange(0, 40, 2), torch.linspace(0.2, 1.8, 20)) if epoch == 0 else None

    def observe(self, batch: Batch, out: StepOutput) -> None:
        super().observe(batch, out)
        self.gradients.append(out.gradient)


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_weighted_step_matches_manual_sgd(clip_norm: float | None) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", (1, 8, 8), 4)
    reference = copy.deepcopy(model)
    config = TrainConfig(epochs=1, budget=0.05, batch_size=20, lr=0.3, momentum=0.0, weight_decay=0.0,
                         schedule="constant", warmup=0.0, eval_points=1, clip_norm=clip_norm)
    data = _data(0)
    strategy = _Weighted()
    trainer = Trainer(model, strategy, data, _data(1), config, progress_bar=False)
    trainer.strategy.setup(trainer.context)
    batch = next(strategy.batches())
    strategy.load_state_dict({**strategy.state_dict(), "cursor": 0})  # replay the same first batch
    trainer.fit()  # exactly one step of 20 examples
    x, y = data[batch.indices]
    loss = (F.cross_entropy(reference(x), y, reduction="none") * batch.weights).mean()
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = 1.0 if clip_norm is None else min(1.0, clip_norm / norm)
    assert clip_norm is None or scale < 0.5  # the clip is active in this case: the test can tell
    for p_trained, p_ref, g in zip(model.parameters(), reference.parameters(), grads, strict=True):
        torch.testing.assert_close(p_trained, p_ref - 0.3 * scale * g)
    handed = strategy.gradients[-1]  # the step's loss gradient at the weights it began from, before clipping
    assert len(strategy.gradients) == 1 and handed is not None
    for h, g in zip(handed, grads, strict=True):
        torch.testing.assert_close(h, g)


def test_schedules() -> None:
    assert lr_factor("onecycle", 0.0, 0.3) == pytest.approx(1 / 25)
    assert lr_factor("onecycle", 0.3, 0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0, 0.3) == pytest.approx(1 / 25 / 1e4)
    assert lr_factor("cosine", 0.1, 0.2) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.6, 0.2) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0, 0.0) == pytest.approx(0.0)
    assert [lr_factor("step", p, 0.0) for p in (0.2, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr_factor("constant", 0.9, 0.1) == 1.0


class _Interrupt(Callback):
    def __init__(self, after_evaluations: int) -> None:
        self.left = after_evaluations

    def on_evaluation(self, trainer: Trainer, record) -> None:
        self.left -= 1

    def on_step_end(self, trainer: Trainer, batch: Batch, out) -> None:
        if self.left <= 0 and trainer.state.step % 3 == 0:  # some steps after the last checkpoint
            raise KeyboardInterrupt


def interrupted_and_resumed(make, checkpoint: Path) -> tuple[Trainer, Trainer]:  # type: ignore[no-untyped-def]
    """``make(checkpoint=..., callbacks=...)`` trained straight through, and again interrupted a few steps after
    its second checkpoint then resumed from it: (straight, resumed) trainers, both fitted; checks the resume point
    and that the two histories and selections are the same."""
    straight = make()
    expected = straight.fit()
    with pytest.raises(KeyboardInterrupt):
        make(checkpoint=checkpoint, callbacks=[_Interrupt(2)]).fit()
    assert checkpoint.is_file()
    resumed_trainer = make(checkpoint=checkpoint)
    resumed = resumed_trainer.fit()
    assert resumed.resumed_from_step is not None and 0 < resumed.resumed_from_step < expected.steps
    assert [r.test_accuracy for r in resumed.history] == [r.test_accuracy for r in expected.history]
    assert [r.indices.tolist() for r in resumed.selections] == [r.indices.tolist() for r in expected.selections]
    return straight, resumed_trainer


@pytest.mark.parametrize("strategy", ["random", "random-subset", "full"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, strategy: str) -> None:
    straight, resumed = interrupted_and_resumed(lambda **kw: _trainer(strategy, **kw), tmp_path / "run.pt")
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)


class _PoisonAfter(EpochStrategy):
    """Clean batches for a while, then a batch holding the example whose input is NaN."""

    name = "poison-test"

    def select(self, epoch: int) -> Selection:
        return Selection(torch.arange(1, 400))

    def batches(self) -> Iterator[Batch]:
        clean = super().batches()
        for _ in range(10):
            yield next(clean)
        while True:
            yield Batch(torch.tensor([0, 1, 2]))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    data = _data(0)
    data.inputs[0] = float("nan")
    torch.manual_seed(0)
    config = TrainConfig(epochs=4, budget=0.5, batch_size=32, eval_points=20)
    ckpt = tmp_path / "run.pt"
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), _PoisonAfter(), data, _data(1), config,
                      checkpoint_path=ckpt, progress_bar=False)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 11.*last good checkpoint \(step \d+\)"):
        trainer.fit()
    saved = load_checkpoint(ckpt)
    assert saved is not None and 0 < saved["progress"]["step"] <= 10
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


class _Probes:
    """Stands in for the forward-cost probe: hands out ``values`` in turn (sleeping ``sleep`` seconds each time)
    and records the repeats each call asked for."""

    def __init__(self, values: list[float], sleep: float = 0.0) -> None:
        self.values, self.sleep, self.repeats = list(values), sleep, []

    def __call__(self, model, data, *, repeats: int, **kwargs) -> float:  # type: ignore[no-untyped-def]
        self.repeats.append(repeats)
        time.sleep(self.sleep)
        return self.values.pop(0)


def test_the_forward_cost_is_the_median_of_probes_before_training_and_at_each_evaluation_untimed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from coreselect.train import trainer as trainer_module
    from coreselect.train.forward_cost import PROBE_REPEATS, RECHECK_REPEATS

    spiked = [2e-5, 3e-5, 9e-4, 1e-5, 4e-5]  # one probe taken while the machine was busy elsewhere
    probes = _Probes(spiked, sleep=0.3)
    monkeypatch.setattr(trainer_module, "forward_seconds_per_example", probes)
    result = _trainer("random", eval_points=4).fit()
    assert probes.repeats == [PROBE_REPEATS] + 4 * [RECHECK_REPEATS] and not probes.values
    assert result.forward_s_per_example == sorted(spiked)[len(spiked) // 2]  # the middle one: the spike is not it
    assert result.timings.evaluation < 0.3  # the probes slept 1.5 s, none of it in a timed section


def test_a_resumed_run_keeps_the_probes_it_had_and_adds_its_own(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from coreselect.train import trainer as trainer_module

    checkpoint = tmp_path / "run.pt"
    monkeypatch.setattr(trainer_module, "forward_seconds_per_example", _Probes([1.0, 2.0, 3.0]))
    with pytest.raises(KeyboardInterrupt):
        _trainer("random", checkpoint=checkpoint, callbacks=[_Interrupt(2)]).fit()
    assert load_checkpoint(checkpoint)["progress"]["forward_probes"] == [1.0, 2.0, 3.0]  # before training, 2 evals
    monkeypatch.setattr(trainer_module, "forward_seconds_per_example", _Probes([10.0, 11.0, 12.0]))
    resumed = _trainer("random", checkpoint=checkpoint)
    result = resumed.fit()  # its own first probe, then the 2 evaluations left
    assert result.resumed_from_step is not None
    assert resumed.state.forward_cost.probes == [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    assert result.forward_s_per_example == (3.0 + 10.0) / 2  # the middle two of six


def test_data_read_on_demand_is_probed_before_training_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from coreselect.data import StreamedDataset
    from coreselect.train import trainer as trainer_module

    probes = _Probes([5e-5])  # a second probe would find the list empty
    monkeypatch.setattr(trainer_module, "forward_seconds_per_example", probes)
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, budget=0.5, batch_size=32, lr=0.05, eval_points=3)
    result = Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("random"), StreamedDataset.of(_data(0)),
                     _data(1), config, progress_bar=False).fit()
    assert len(result.history) == 3 and len(probes.repeats) == 1 and result.forward_s_per_example == 5e-5
