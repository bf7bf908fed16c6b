"""Forgetting events: the batched counter against a per-presentation loop, resume, and the report's use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.report.tables import forgetting_table, report, selection_forgetting
from coreselect.strategies import create_strategy
from coreselect.train import FORGETTING, ForgettingCounter, ForgettingEvents, TrainConfig, Trainer
from test_trainer import _data, _Interrupt


def _loop_scores(n: int, presentations: list[tuple[list[int], list[bool]]]) -> list[float]:
    """Toneva et al.'s definition, one example at a time."""
    last: dict[int, bool] = {}
    forgets, learned = [0] * n, [False] * n
    for indices, correct in presentations:
        for i, c in zip(indices, correct, strict=True):
            if last.get(i) is True and not c:
                forgets[i] += 1
            last[i] = c
            learned[i] |= c
    top = max(forgets) + 1
    return [float("nan") if i not in last else float(forgets[i] if learned[i] else top) for i in range(n)]


def test_counter_matches_the_per_example_definition() -> None:
    g = torch.Generator().manual_seed(0)
    n, counter, presentations = 50, ForgettingCounter(50), []
    for _ in range(200):
        indices = torch.randperm(n, generator=g)[:16]  # distinct within a batch, as in training batches
        correct = torch.rand(16, generator=g) < 0.6
        counter.update(indices, correct)
        presentations.append((indices.tolist(), correct.tolist()))
    presentations.append(([7], [False]))  # a never-learned example and an unseen one
    counter.update(torch.tensor([7]), torch.tensor([False]))
    expected = _loop_scores(n + 2, [*presentations, ([n], [False])])
    counter2 = ForgettingCounter(n + 2)
    for indices, correct in [*presentations, ([n], [False])]:
        counter2.update(torch.tensor(indices), torch.tensor(correct))
    torch.testing.assert_close(counter2.scores(), torch.tensor(expected), equal_nan=True)
    assert torch.isnan(counter2.scores()[n + 1]) and counter2.scores()[n] == max(expected[:n + 1])
    assert counter.forgets.sum() > 0


def test_forgetting_survives_an_interruption(tmp_path: Path) -> None:
    data = _data(0)
    flipped = torch.arange(0, len(data), 3)  # wrong labels on a third: examples get learned and forgotten
    data = data.with_targets(data.targets.index_put((flipped,), (data.targets[flipped] + 1) % 4))

    def trainer(callbacks, checkpoint=None) -> Trainer:
        torch.manual_seed(0)
        config = TrainConfig(epochs=6, budget=1.0, batch_size=32, lr=0.2, eval_points=4)
        return Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("full"), data, _data(1), config,
                       checkpoint_path=checkpoint, callbacks=callbacks, progress_bar=False)

    straight = ForgettingEvents()
    trainer([straight]).fit()
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        trainer([ForgettingEvents(), _Interrupt(2)], ckpt).fit()
    resumed = ForgettingEvents()
    trainer([resumed], ckpt).fit()
    assert torch.equal(resumed.example_scores()[FORGETTING], straight.example_scores()[FORGETTING])
    assert straight.example_scores()[FORGETTING].sum() > 0

    class Amnesic(ForgettingEvents):  # what a resume that dropped the counter's state would give
        def load_state_dict(self, state) -> None:
            pass

    with pytest.raises(KeyboardInterrupt):
        trainer([ForgettingEvents(), _Interrupt(2)], tmp_path / "again.pt").fit()
    amnesic = Amnesic()
    trainer([amnesic], tmp_path / "again.pt").fit()
    assert not torch.equal(amnesic.example_scores()[FORGETTING], straight.example_scores()[FORGETTING])


def test_full_runs_store_forgetting_and_the_report_rates_selections(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    train = {"epochs": 4, "budget": 0.3, "batch_size": 32, "eval_points": 4}
    common = {"dataset": "npz", "data_root": str(npz_root), "model": "mlp", "seed": 0, "train": train}
    full = run_experiment(RunConfig.create(strategy="full", **common), store, progress_bar=False)
    rand = run_experiment(RunConfig.create(strategy="random", **common), store, progress_bar=False)
    scores = store.example_scores(full.run_id, FORGETTING)
    assert scores is not None and len(scores) == 600 and not torch.isnan(scores).any()
    assert store.example_scores(rand.run_id, FORGETTING) is None  # only the reference records it

    runs = store.runs(status="done")
    per_run = selection_forgetting(store, runs, parts=4)
    rounds = store.selections(rand.run_id)  # one subset per compressed epoch: one per quarter here
    expected = [float(scores[r["indices"]].mean()) for r in rounds]
    assert per_run[rand.run_id] == pytest.approx(expected)
    table = forgetting_table(store, runs, parts=4)
    assert table is not None and f"{float(scores.mean()):.3f}" in table
    assert "Forgetting score" in report(store)
