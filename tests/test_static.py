"""Static coresets: LTC correlation against numpy, the trajectory store across a restart, hand-counted
forgetting, areas under the margin against sorted logits, class-balanced top-k, CCS against a brute-force count,
and the proxy runs the runner makes and caches."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from coreselect.data import InMemoryDataset
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.experiments.alignment import aligned_examples, alignment_record
from coreselect.models import create_model
from coreselect.notes import LOG
from coreselect.report import plots
from coreselect.report.alignment import plot_alignment, store_alignment_figure
from coreselect.signals import pairwise_trajectory_correlation, trajectory_correlation
from coreselect.strategies import create_strategy
from coreselect.strategies.proxy import ProxyRecord
from coreselect.strategies.static import coverage_centric, top_k
from coreselect.train import AreaUnderMargin, Callback, ForgettingCounter, MarginAccumulator, TrainConfig, Trainer
from coreselect.train.margins import margins
from coreselect.train.trajectory import LossTrajectories, TrajectoryStore
from test_trainer import _data, _Interrupt, _trainer


def test_ltc_scores_match_numpy_corrcoef() -> None:
    rng = np.random.default_rng(0)
    points, n, m, classes = 9, 40, 15, 3
    train, val = rng.normal(size=(points, n)), rng.normal(size=(points, m))
    train[:, 5] = 1.0  # a constant trajectory: correlation 0 by the zero-variance rule
    train_y, val_y = rng.integers(0, classes, n), np.arange(m) % classes
    args = (torch.tensor(train_y), torch.tensor(val), torch.tensor(val_y))
    for differences in (True, False):
        x, v = (np.diff(train, axis=0), np.diff(val, axis=0)) if differences else (train, val)
        got = trajectory_correlation(torch.tensor(train), args[0], args[1], args[2], differences=differences)
        pairs = trajectory_correlation(torch.tensor(train), *args, differences=differences, aggregation="pair_mean")
        for i in range(n):
            if i == 5 and not differences:
                assert got[i] == 0 and pairs[i] == 0
                continue
            if i == 5:
                continue
            same = v[:, val_y == train_y[i]]
            expected = np.corrcoef(x[:, i], same.mean(1))[0, 1]
            expected_pairs = np.mean([np.corrcoef(x[:, i], same[:, j])[0, 1] for j in range(same.shape[1])])
            assert float(got[i]) == pytest.approx(expected, abs=1e-5)
            assert float(pairs[i]) == pytest.approx(expected_pairs, abs=1e-5)


def test_pairwise_correlation_and_extreme_examples_match_numpy() -> None:
    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(8, 30)), rng.normal(size=(8, 12))
    val_y = torch.tensor(np.arange(12) % 3)
    for differences in (True, False):
        x, v = (np.diff(train, axis=0), np.diff(val, axis=0)) if differences else (train, val)
        expected = np.corrcoef(v.T, x.T)[:12, 12:]  # rows: validation, columns: training examples
        got = pairwise_trajectory_correlation(torch.tensor(train), torch.tensor(val), differences=differences)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    chosen = aligned_examples(torch.tensor(train), torch.tensor(val), val_y, per_class=2, k=3)
    assert torch.bincount(val_y[chosen.val_indices], minlength=3).tolist() == [2, 2, 2]
    expected = np.corrcoef(np.diff(val, axis=0).T, np.diff(train, axis=0).T)[:12, 12:]
    for row, j in enumerate(chosen.val_indices.tolist()):
        order = np.argsort(expected[j])
        assert chosen.positive[row].tolist() == order[::-1][:3].tolist()
        assert chosen.negative[row].tolist() == order[:3].tolist()
        np.testing.assert_allclose(chosen.positive_correlation[row].numpy(), expected[j][order[::-1][:3]], atol=1e-5)
    train_set = InMemoryDataset(torch.rand(30, 1, 5, 5), torch.arange(30) % 3, 3)
    val_set = InMemoryDataset(torch.rand(12, 1, 5, 5), val_y, 3, classes=("x", "y", "z"))
    record = alignment_record(torch.tensor(train), torch.tensor(val), train_set, val_set, per_class=2, k=3)
    for row, j in enumerate(chosen.val_indices.tolist()):  # the record holds what the figure shows, by row
        picked = torch.cat([chosen.positive[row], chosen.negative[row]])
        assert torch.equal(record["val_inputs"][row], val_set.inputs[j])
        assert torch.equal(record["train_inputs"][row], train_set.inputs[picked])
        assert torch.equal(record["train_curves"][:, row], torch.tensor(train)[:, picked])
        assert record["names"][row] == "xyz"[int(val_y[j])]
    figure = plot_alignment(record)
    assert len(figure.axes) == 6 * (2 * 3 + 2)  # per row: the validation image, 3 + 3 examples, the curves


def test_forgetting_counts_a_hand_computed_sequence() -> None:
    counter = ForgettingCounter(3)
    # example 0: right, wrong, right, wrong -> 2 events; 1: wrong, right, right -> 0; 2: always wrong
    for idx, ok in [([0, 1, 2], [1, 0, 0]), ([0, 1], [0, 1]), ([0, 1, 2], [1, 1, 0]), ([0], [0])]:
        counter.update(torch.tensor(idx), torch.tensor(ok, dtype=torch.bool))
    assert counter.scores().tolist() == [2.0, 0.0, 3.0]  # never learned: one more than the most forgotten


def _margin_by_sorting(row: list[float], label: int) -> float:
    """The margin of one row of logits from its sorted values (independent of the library's scatter)."""
    ranked = sorted(range(len(row)), key=lambda j: -row[j])
    rival = ranked[1] if ranked[0] == label else ranked[0]
    return row[label] - row[rival]


def test_area_under_margin_is_each_examples_mean_margin() -> None:
    g = torch.Generator().manual_seed(0)
    accumulator, seen = MarginAccumulator(6), {i: [] for i in range(6)}
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    for indices in ([0, 1, 2], [2, 3, 3, 0], [1, 4], [0]):  # example 3 twice in one batch; example 5 never
        idx = torch.tensor(indices)
        logits = torch.randn(len(indices), 4, generator=g)
        accumulator.update(idx, margins(logits, targets[idx]))
        for row, i in zip(logits.tolist(), indices, strict=True):
            seen[i].append(_margin_by_sorting(row, int(targets[i])))
    got = accumulator.scores()
    for i in range(5):
        assert float(got[i]) == pytest.approx(float(np.mean(seen[i])), abs=1e-6)
    assert torch.isnan(got[5])


class _StepLogits(Callback):
    def __init__(self) -> None:
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_step_end(self, trainer: Trainer, batch, out) -> None:  # type: ignore[no-untyped-def]
        self.steps.append((batch.indices.clone(), out.logits.detach().clone()))


def test_area_under_margin_comes_from_the_training_steps_and_survives_a_restart(tmp_path: Path) -> None:
    recorder, straight = _StepLogits(), AreaUnderMargin()
    trainer = _trainer("full", callbacks=[recorder, straight], budget=1.0)
    trainer.fit()
    margins_of: dict[int, list[float]] = {}
    for indices, logits in recorder.steps:
        for i, row in zip(indices.tolist(), logits.tolist(), strict=True):
            margins_of.setdefault(i, []).append(_margin_by_sorting(row, int(trainer.train_data.targets[i])))
    expected = torch.tensor([float(np.mean(margins_of[i])) for i in range(len(trainer.train_data))])
    torch.testing.assert_close(straight.example_scores()["aum"], expected, atol=1e-5, rtol=0)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer("full", checkpoint, callbacks=[AreaUnderMargin(), _Interrupt(2)], budget=1.0).fit()
    resumed = AreaUnderMargin()
    _trainer("full", checkpoint, callbacks=[resumed], budget=1.0).fit()
    torch.testing.assert_close(resumed.example_scores()["aum"], straight.example_scores()["aum"])


def test_ccs_drops_by_a_second_score_and_stratifies_the_first() -> None:
    g = torch.Generator().manual_seed(6)
    scores, cut = torch.rand(300, generator=g), torch.rand(300, generator=g)
    k, beta, strata = 50, 0.3, 6
    chosen = coverage_centric(scores, torch.zeros(300, dtype=torch.long), k, beta=beta, strata=strata,
                              class_balanced=False, drop_scores=cut)
    dropped = set(sorted(range(300), key=lambda i: -float(cut[i]))[: int(beta * 300)])
    pool = [i for i in range(300) if i not in dropped]
    assert len(chosen) == k and not dropped & set(chosen.tolist())
    low, high = min(float(scores[i]) for i in pool), max(float(scores[i]) for i in pool)
    counts = [0] * strata
    for i in pool:
        counts[min(int((float(scores[i]) - low) / ((high - low) / strata)), strata - 1)] += 1
    expected, left = [0] * strata, k
    for j, b in enumerate(sorted(range(strata), key=lambda b: counts[b])):
        expected[b] = min(counts[b], left // (strata - j))
        left -= expected[b]
    got = [0] * strata
    for i in chosen.tolist():
        got[min(int((float(scores[i]) - low) / ((high - low) / strata)), strata - 1)] += 1
    assert got == expected
    with pytest.raises(Exception, match="hard-cut score"):
        coverage_centric(scores, torch.zeros(300, dtype=torch.long), k, beta=beta, drop_scores=cut[:10])


@pytest.mark.parametrize("drop_by", ["score", "aum"])
def test_forgetting_ccs_drops_the_lowest_margins_or_the_most_forgotten(drop_by: str) -> None:
    data = _data(0)
    g = torch.Generator().manual_seed(8)
    record = ProxyRecord(1.0, data.targets, forgetting=torch.randint(0, 9, (len(data),), generator=g).float(),
                         aum=torch.randn(len(data), generator=g))
    strategy = create_strategy("forgetting", rule="ccs", ccs_beta=0.4, ccs_drop_by=drop_by)
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, _data(1),
                      TrainConfig(epochs=1, budget=0.2, eval_points=1), progress_bar=False)
    strategy.setup(trainer.context)
    strategy.provide(record)
    chosen = set(strategy.select(0).indices.tolist())
    hardness = -record.aum if drop_by == "aum" else record.forgetting
    hardest = set(torch.argsort(hardness, descending=True, stable=True)[: int(0.4 * len(data))].tolist())
    # forgetting's CCS samples over the whole set by default
    assert len(chosen) == round(0.2 * len(data)) and not hardest & chosen


def test_class_balanced_top_k() -> None:
    targets = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
    scores = torch.cat([torch.arange(10.0) + 100, torch.arange(10.0), torch.tensor([-5.0, -6.0])])
    chosen = top_k(scores, targets, 9)
    # equal quotas of 3; class 2 has only 2, its surplus goes to the lowest label: 4, 3, 2
    assert torch.bincount(targets[chosen], minlength=3).tolist() == [4, 3, 2]
    assert set(chosen.tolist()) == {6, 7, 8, 9, 17, 18, 19, 20, 21}  # the highest scores within each class
    balanced = top_k(scores, torch.tensor([0] * 10 + [1] * 12), 6)
    assert torch.bincount(torch.tensor([0] * 10 + [1] * 12)[balanced]).tolist() == [3, 3]
    assert set(top_k(scores, targets, 9, class_balanced=False).tolist()) == set(range(1, 10))


def test_trajectory_store_survives_a_restart(tmp_path: Path) -> None:
    train, val = _data(0), _data(2).subset(torch.arange(100))

    def trainer(callbacks, checkpoint=None) -> Trainer:
        torch.manual_seed(0)
        config = TrainConfig(epochs=6, budget=1.0, batch_size=32, lr=0.05, eval_points=3)
        return Trainer(create_model("cnn", (1, 8, 8), 4), create_strategy("full"), train, _data(1), config,
                       val=val, checkpoint_path=checkpoint, callbacks=callbacks, progress_bar=False)

    for source in ("eval", "steps"):
        straight = LossTrajectories(tmp_path / f"straight-{source}", train_losses=source)
        trainer([straight]).fit()
        folder, ckpt = tmp_path / f"resumed-{source}", tmp_path / f"run-{source}.pt"
        with pytest.raises(KeyboardInterrupt):
            trainer([LossTrajectories(folder, train_losses=source), _Interrupt(1)], ckpt).fit()
        assert 0 < TrajectoryStore.open(folder).rows < 6  # what the interrupted run had written
        trainer([LossTrajectories(folder, train_losses=source)], ckpt).fit()
        expected, got = TrajectoryStore.open(tmp_path / f"straight-{source}"), TrajectoryStore.open(folder)
        assert got.rows == expected.rows == 6
        np.testing.assert_array_equal(got.train, expected.train)
        np.testing.assert_array_equal(got.val, expected.val)
        assert np.isfinite(got.train).all() and got.train[0].mean() > got.train[-1].mean()


def test_static_strategies_share_one_cached_proxy_and_transfer(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    train = {"epochs": 4, "budget": 0.2, "batch_size": 32, "eval_points": 2}
    common = {"dataset": "npz", "data_root": str(npz_root), "model": "mlp", "seed": 0, "val_fraction": 0.2,
              "train": train}
    ltc = run_experiment(RunConfig.create(strategy="ltc", **common), store, progress_bar=False)
    forgetting = run_experiment(RunConfig.create(strategy="forgetting", **common), store, progress_bar=False)
    proxies = list((tmp_path / "runs.db.proxies").iterdir())
    assert len(proxies) == 1  # one dynamics proxy served both
    data_files = sorted(npz_root.glob("*.npz"))
    for f in data_files:  # the report reads the store alone: no data to load, no strategy to make
        f.rename(f.with_suffix(".away"))
    figure = store_alignment_figure(store, tmp_path / "report" / "ltc_alignment.png")
    assert figure is not None and figure.read_bytes().startswith(b"\x89PNG")
    assert plots.class_balance(store, store.runs(status="done")) is not None
    for f in data_files:
        f.with_suffix(".away").rename(f)
    proxy_s = [store.evaluations(r.run_id)[-1].extras["proxy_s"] for r in (ltc, forgetting)]
    assert proxy_s[0] == proxy_s[1] > 0
    (selection,) = store.selections(ltc.run_id)
    assert len(selection["indices"]) == round(0.2 * 480)
    run_experiment(RunConfig.create(strategy="el2n", **common), store, progress_bar=False)
    transferred = RunConfig.create(strategy="ltc", params={"proxy_model": "cnn"}, **common)
    run_experiment(transferred, store, progress_bar=False)
    assert len(list((tmp_path / "runs.db.proxies").iterdir())) == 3  # early proxies, and the cnn's dynamics
    with pytest.raises(Exception, match="validation split"):
        run_experiment(RunConfig.create(strategy="ltc", **{**common, "val_fraction": 0.0}), store,
                       progress_bar=False)


def _ccs_allocation(scores: list[float], k: int, beta: float, strata: int) -> tuple[set[int], list[int]]:
    """CCS written out example by example (independent of the library's tensor code): the positions it may
    choose from and how many it takes from each stratum, strata in index order."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    pool = ranked[int(beta * len(scores)):]
    low, high = min(scores[i] for i in pool), max(scores[i] for i in pool)
    bins: dict[int, list[int]] = {}
    for i in pool:
        b = min(int((scores[i] - low) / ((high - low) / strata)), strata - 1)
        bins.setdefault(b, []).append(i)
    takes, left = {}, k
    order = sorted(bins, key=lambda b: len(bins[b]))
    for j, b in enumerate(order):
        takes[b] = min(len(bins[b]), left // (len(order) - j))
        left -= takes[b]
    return set(pool), [takes.get(b, 0) for b in range(strata)]


def test_ccs_drops_the_hardest_and_fills_strata_like_a_brute_force_count() -> None:
    g = torch.Generator().manual_seed(3)
    scores = torch.cat([torch.rand(300, generator=g), 3 + torch.rand(20, generator=g)])  # a long hard tail
    targets = torch.zeros(320, dtype=torch.long)
    k, beta, strata = 60, 0.1, 8
    chosen = coverage_centric(scores, targets, k, beta=beta, strata=strata, class_balanced=False)
    allowed, expected = _ccs_allocation(scores.tolist(), k, beta, strata)
    assert len(chosen) == k == len(set(chosen.tolist())) and set(chosen.tolist()) <= allowed
    hardest = torch.argsort(scores, descending=True)[: int(beta * 320)]
    assert not set(hardest.tolist()) & set(chosen.tolist())
    pool = torch.tensor(sorted(allowed))
    low, high = float(scores[pool].min()), float(scores[pool].max())
    got = torch.bincount(((scores[chosen].double() - low) / ((high - low) / strata)).floor().long()
                         .clamp(max=strata - 1), minlength=strata).tolist()
    assert got == expected
    top = torch.topk(scores, k).indices  # plain top-k would take the whole hard tail
    assert set(range(300, 320)) <= set(top.tolist())


def test_ccs_keeps_class_quotas_and_is_seeded() -> None:
    scores = torch.rand(400, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(400) % 4
    a = coverage_centric(scores, targets, 100, beta=0.2, generator=torch.Generator().manual_seed(5))
    b = coverage_centric(scores, targets, 100, beta=0.2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.bincount(targets[a], minlength=4).tolist() == [25, 25, 25, 25]


@pytest.mark.parametrize("name", ["el2n", "ltc"])
def test_ccs_drops_the_hardest_end_of_each_score(name: str) -> None:
    """EL2N's hardest are its highest scores; LTC's are its lowest (the least aligned with the validation loss):
    a CCS selection never holds the hardest beta share of its class, and a top-k selection is the highest; the
    default is CCS for EL2N, top-k for LTC (both per class)."""
    data = _data(0)
    scores = torch.rand(len(data), generator=torch.Generator().manual_seed(3))
    picked = {}
    settings = {"ccs": {"rule": "ccs", "class_balanced": True}, "top": {"rule": "top", "class_balanced": True},
                "default": {}, "ccs over the set": {"rule": "ccs", "class_balanced": False}}
    for rule, params in settings.items():
        strategy = create_strategy(name, **params, ccs_beta=0.5)
        trainer = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, _data(1),
                          TrainConfig(epochs=1, budget=0.2, eval_points=1), progress_bar=False)
        strategy.setup(trainer.context)
        strategy.use_scores(scores)
        picked[rule] = strategy.select(0).indices
    difficulty = scores if name == "el2n" else -scores
    for c in range(4):
        members = (data.targets == c).nonzero().squeeze(1)
        hardest = set(members[torch.argsort(difficulty[members], descending=True)[:len(members) // 2]].tolist())
        chosen = [i for i in picked["ccs"].tolist() if int(data.targets[i]) == c]
        assert chosen and not hardest & set(chosen)
        top = [i for i in picked["top"].tolist() if int(data.targets[i]) == c]  # top-k: the class's highest
        assert set(top) == set(members[torch.topk(scores[members], len(top)).indices].tolist())
    # a score of difficulty selects by CCS unless told otherwise, per class; LTC keeps its paper's top-k
    assert torch.equal(picked["default"], picked["ccs" if name == "el2n" else "top"])
    assert not torch.equal(picked["ccs over the set"], picked["ccs"])


@pytest.mark.parametrize(("budget", "beta"), [(0.02, 0.3), (0.2, 0.1)])
def test_ccs_drops_more_of_the_hardest_end_from_a_smaller_coreset(budget: float, beta: float) -> None:
    data = _data(0)
    scores = torch.rand(len(data), generator=torch.Generator().manual_seed(4))
    strategy = create_strategy("el2n", rule="ccs", class_balanced=False)
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, _data(1),
                      TrainConfig(epochs=1, budget=budget, eval_points=1), progress_bar=False)
    strategy.setup(trainer.context)
    strategy.use_scores(scores)
    chosen = strategy.select(0).indices
    assert strategy.ccs_beta() == beta and len(chosen) == round(budget * len(data))
    hardest = set(torch.topk(scores, int(beta * len(data))).indices.tolist())
    assert not hardest & set(chosen.tolist())


@pytest.mark.parametrize(("name", "rule", "budget", "noted"),
                         [("el2n", "top", 0.2, True), ("el2n", "top", 0.5, False), ("el2n", "ccs", 0.2, False),
                          ("ltc", "top", 0.2, False)])
def test_the_top_k_hardest_rule_at_a_small_coreset_is_noted(name: str, rule: str, budget: float,
                                                            noted: bool) -> None:
    """Keeping the hardest few examples is the known failure of difficulty scores at high pruning rates: the
    user is told, and pointed to CCS; a larger coreset, the CCS rule and a score of value (LTC) are not noted."""
    data = _data(0)
    strategy = create_strategy(name, rule=rule)
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, _data(1),
                      TrainConfig(epochs=1, budget=budget, eval_points=1), progress_bar=False)
    strategy.setup(trainer.context)
    strategy.use_scores(torch.rand(len(data), generator=torch.Generator().manual_seed(2)))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    level = LOG.level
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        strategy.select(0)
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(level)
    assert any("rule=ccs" in r.getMessage() for r in records) is noted
