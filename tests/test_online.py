"""Online batch selection: Laplace samples against their closed form, the Bayesian score against its
definition, KFAC factors against explicit outer products, unbiased grad-norm importance sampling, and runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_resumes_exact_stream, make_blobs
from coreselect.data import InMemoryDataset, load_dataset, prepare_splits
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.signals.laplace import (
    KfacFactors,
    bayesian_score,
    logit_variance_and_factor,
    sample_logits,
    target_log_probs,
)
from coreselect.strategies import Batch, Budget, Context, StepOutput, create_strategy
from coreselect.train import Callback, TrainConfig, Trainer
from test_trainer import interrupted_and_resumed


def _factors(d: int = 5, c: int = 3, seed: int = 0) -> KfacFactors:
    g = torch.Generator().manual_seed(seed)
    factors = KfacFactors(0.9)
    for _ in range(3):
        factors.update(torch.randn(20, d, generator=g), torch.randn(20, c, generator=g))
    return factors


def test_kfac_factors_are_the_averaged_outer_products() -> None:
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=g), torch.randn(8, 3, generator=g)) for _ in range(3)]
    factors = KfacFactors(0.9)
    for h, e in batches:
        factors.update(h, e)
    outer = [(sum(torch.outer(r, r) for r in h) / 8, sum(torch.outer(r, r) for r in e) / 8) for h, e in batches]
    expected_a = 0.9 * (0.9 * outer[0][0] + 0.1 * outer[1][0]) + 0.1 * outer[2][0]  # the first update copies
    expected_g = 0.9 * (0.9 * outer[0][1] + 0.1 * outer[1][1]) + 0.1 * outer[2][1]
    torch.testing.assert_close(factors.a, expected_a.double())
    torch.testing.assert_close(factors.g, expected_g.double())
    assert factors.count == 3


def test_sampled_logits_have_the_closed_form_mean_and_covariance() -> None:
    factors = _factors()
    features, logits = torch.randn(2, 5, generator=torch.Generator().manual_seed(2)), torch.tensor([[1.0, -1, 0],
                                                                                                    [0.5, 2, -1]])
    variance, inv_chol_t = logit_variance_and_factor(features, factors, effective_data=50.0, prior_precision=4.0)
    v = math.sqrt(50) * factors.a + 2.0 * torch.eye(5, dtype=torch.float64)
    u = math.sqrt(50) * factors.g + 2.0 * torch.eye(3, dtype=torch.float64)
    expected_var = torch.stack([h.double() @ torch.linalg.solve(v, h.double()) for h in features])
    torch.testing.assert_close(variance, expected_var)
    samples = sample_logits(logits, variance, inv_chol_t, 40000, torch.Generator().manual_seed(3)).double()
    for i in range(2):
        cov = expected_var[i] * torch.linalg.inv(u)
        mean_se = (torch.diagonal(cov) / 40000).sqrt()
        assert ((samples[:, i].mean(0) - logits[i].double()).abs() < 4 * mean_se).all()
        empirical = torch.cov(samples[:, i].T)
        assert torch.allclose(empirical, cov, rtol=0.05, atol=0.05 * float(torch.diagonal(cov).max()))


def test_bayesian_score_equals_its_definition() -> None:
    g = torch.Generator().manual_seed(4)
    samples, val_logits, targets, alpha = torch.randn(6, 4, 3, generator=g), torch.randn(4, 3, generator=g), \
        torch.tensor([0, 2, 1, 2]), 0.3
    got = bayesian_score(samples, target_log_probs(val_logits, targets), targets, alpha)
    for i in range(4):
        probs = [math.exp(samples[s, i, targets[i]]) / sum(math.exp(v) for v in samples[s, i]) for s in range(6)]
        val_prob = math.exp(val_logits[i, targets[i]]) / sum(math.exp(v) for v in val_logits[i])
        expected = alpha * sum(math.log(p) for p in probs) / 6 + (1 - alpha) * math.log(val_prob) \
            - math.log(sum(probs) / 6)
        assert float(got[i]) == pytest.approx(expected, abs=1e-5)


def _context(n: int = 400) -> Context:
    x, y = make_blobs(n, seed=5)
    torch.manual_seed(0)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    return Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.1, 10, n, 32))


@pytest.mark.parametrize("uniform_share", [0.0, 0.3])
def test_grad_norm_importance_sampling_is_unbiased(uniform_share: float) -> None:
    ctx = _context()
    ctx.budget = Budget(0.1, 10, len(ctx.train), 4)  # n_b = the batch size, n_B = 4 / 0.4 = 10
    strategy = create_strategy("grad-norm-is", selection_ratio=0.4, uniform_share=uniform_share)
    strategy.setup(ctx)
    assert strategy.candidate_count == 10
    candidates = torch.arange(10)
    norms = torch.linspace(0.1, 2.0, 10)
    strategy.score = lambda c: norms  # fixed per-candidate gradient norms
    grads = torch.randn(10, 3, generator=torch.Generator().manual_seed(6)) * norms[:, None]
    total, draws, largest = torch.zeros(3, dtype=torch.float64), 20000, 0.0
    for _ in range(draws):
        chosen, weights = strategy.choose(candidates)
        total += (weights[:, None] * grads[chosen]).mean(0).double()  # the trainer's weighted mean
        largest = max(largest, float(weights.max()))
    if uniform_share:  # defensive mixture: q_i ≥ s / n_B, so no weight 1 / (n_B·q_i) exceeds 1 / s
        assert largest <= 1 / uniform_share + 1e-5
    standard_error = grads.double().norm(dim=1).max() / math.sqrt(draws)
    assert ((total / draws - grads.double().mean(0)).abs() < 4 * standard_error).all()
    naive = grads[torch.topk(norms, 4).indices].mean(0)  # top-k without weights is biased
    assert (naive - grads.mean(0)).abs().max() > 10 * standard_error


@pytest.mark.parametrize("name", ["uniform", "train-loss", "grad-norm-is"])
def test_online_streams_resume_exactly(name: str) -> None:
    assert_resumes_exact_stream(name, _context, skip=5, take=8)


def test_holdout_split_and_online_runs(npz_root: Path, tmp_path: Path) -> None:
    plain = prepare_splits(load_dataset("npz", npz_root), seed=0)
    split = prepare_splits(load_dataset("npz", npz_root), holdout_fraction=0.5, label_noise=0.2, seed=0)
    assert split.holdout is not None and len(split.train) + len(split.holdout) == len(plain.train)
    assert "holdout_fraction" not in RunConfig.create().setting_key
    assert RunConfig.create(holdout_fraction=0.5).setting_key != RunConfig.create().setting_key

    store = ResultStore(tmp_path / "runs.db")
    common = {"dataset": "npz", "data_root": str(npz_root), "model": "mlp", "seed": 0, "holdout_fraction": 0.5,
              "train": {"epochs": 3, "budget": 0.1, "eval_points": 3, "batch_size": 4}}
    for name in ("rho-loss", "irreducible-loss", "bayesian"):
        run = run_experiment(RunConfig.create(strategy=name, **common),
                             store, progress_bar=False)
        assert run.test_accuracy is not None
        assert (run.selection_forward_examples > 0) == (name != "irreducible-loss")  # IL is looked up by index
    assert len(list((tmp_path / "runs.db.proxies").iterdir())) == 1  # one holdout model served all three
    with pytest.raises(Exception, match="--holdout"):
        run_experiment(RunConfig.create(strategy="rho-loss", **{**common, "holdout_fraction": 0.0}), store,
                       progress_bar=False)


def test_bayesian_with_a_local_zero_shot_checkpoint(tmp_path: Path) -> None:
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))  # a tiny fake image encoder
    exported = torch.export.export(encoder, (torch.randn(4, 1, 8, 8),),
                                   dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, tmp_path / "image_encoder.pt2")
    torch.save(torch.randn(4, 6), tmp_path / "class_embeddings.pt")
    x, y = make_blobs(400, seed=7)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    strategy = create_strategy("bayesian", validation="zero_shot", zero_shot_path=str(tmp_path),
                               selection_ratio=0.2, samples=16)
    assert strategy.proxy_request() is None
    torch.manual_seed(0)
    result = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, data,
                     TrainConfig(epochs=5, budget=0.2, eval_points=1, batch_size=8), progress_bar=False).fit()
    assert strategy.factors.count == result.steps and result.test_accuracy > 0.5
    with pytest.raises(Exception, match="missing"):
        create_strategy("bayesian", validation="zero_shot", zero_shot_path=str(tmp_path / "nowhere")).setup(
            Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.1, 1, 400, 8)))


@pytest.mark.parametrize("name", ["train-loss", "grad-norm", "rho-loss"])
def test_reuse_within_scores_recent_candidates_by_their_latest_training_or_selection_forward(name: str) -> None:
    ctx = _context()
    strategy = create_strategy(name, reuse_within=3)
    strategy.setup(ctx)
    if name == "rho-loss":
        strategy.holdout_logits = torch.zeros(len(ctx.train), 4)  # irreducible loss log 4 for every example
    candidates = torch.arange(20)
    cached = torch.rand(8, generator=torch.Generator().manual_seed(1)) + 5.0  # far from any real loss
    logits = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    ctx.signals.record(candidates[:8], logits, ctx.train.targets[:8], cached, step=4)  # recent for step 7
    ctx.signals.record(candidates[8:12], logits[:4], ctx.train.targets[8:12], cached[:4], step=2)  # too old
    strategy.steps = 7
    scores = strategy.score(candidates)
    assert ctx.log.forward_examples == 12  # the 4 stale and the 8 never trained on
    with torch.no_grad():
        out = ctx.model.eval()(ctx.train.inputs[candidates[8:]])
    fresh_loss = F.cross_entropy(out, ctx.train.targets[8:20], reduction="none")
    p_minus_y = torch.softmax(logits, 1) - F.one_hot(ctx.train.targets[:8], 4)
    if name == "grad-norm":
        torch.testing.assert_close(scores[:8], p_minus_y.norm(dim=1))
        torch.testing.assert_close(scores[8:], (torch.softmax(out, 1) - F.one_hot(ctx.train.targets[8:20], 4))
                                   .norm(dim=1))
    else:
        shift = math.log(4) if name == "rho-loss" else 0.0
        torch.testing.assert_close(scores[:8], cached - shift)
        torch.testing.assert_close(scores[8:], fresh_loss - shift)
    strategy.steps = 9  # the 12 forwarded at step 7 are recent now, the 8 trained at step 4 are not
    ctx.model.train()
    again = strategy.score(candidates)
    assert ctx.log.forward_examples == 12 + 8
    torch.testing.assert_close(again[8:], scores[8:])  # the latest selection forward's values, not forwarded again
    resumed = create_strategy(name, reuse_within=3)
    resumed.setup(ctx)
    resumed.load_state_dict(strategy.state_dict())
    if name == "rho-loss":
        resumed.holdout_logits = strategy.holdout_logits
    torch.testing.assert_close(resumed.score(candidates[8:]), again[8:])  # the memory survives a checkpoint
    assert ctx.log.forward_examples == 12 + 8
    training_only = create_strategy(name, reuse_within=3, reuse_selection_forwards=False)
    training_only.setup(ctx)
    if name == "rho-loss":
        training_only.holdout_logits = strategy.holdout_logits
    training_only.steps = 9
    forwarded = ctx.log.forward_examples
    torch.testing.assert_close(training_only.score(candidates[8:]), again[8:])
    training_only.score(candidates[8:])
    assert ctx.log.forward_examples == forwarded + 24  # the cache only: forwarded again, every time
    strategy.steps = 20  # now every known value is too old: all forwarded
    strategy.score(candidates)
    assert ctx.log.forward_examples == forwarded + 24 + 20


@pytest.mark.parametrize("name", ["train-loss", "rho-loss"])
def test_unseen_first_takes_candidates_without_a_known_value_first_and_forwards_nothing(name: str) -> None:
    ctx = _context()
    strategy = create_strategy(name, reuse_within=1000, unseen="first")
    strategy.setup(ctx)
    if name == "rho-loss":
        strategy.holdout_logits = torch.zeros(len(ctx.train), 4)
    candidates = torch.arange(40)  # n_B = 32 / 0.1 would exceed them: choose from these 40
    cached = torch.rand(30, generator=torch.Generator().manual_seed(3)) + 5.0
    logits = torch.randn(30, 4, generator=torch.Generator().manual_seed(4))
    ctx.signals.record(candidates[:30], logits, ctx.train.targets[:30], cached, step=0)
    strategy.steps = 1
    scores = strategy.score(candidates)
    shift = math.log(4) if name == "rho-loss" else 0.0
    torch.testing.assert_close(scores[:30], cached - shift)  # known: their latest training loss
    assert torch.isinf(scores[30:]).all() and ctx.log.forward_examples == 0
    chosen, _ = strategy.choose(candidates)  # the 10 unseen, then the 22 highest known losses
    expected = torch.cat([torch.arange(30, 40), torch.topk(cached, 22).indices])
    assert sorted(chosen.tolist()) == sorted(expected.tolist())


def test_unseen_first_runs_without_a_selection_forward() -> None:
    x, y = make_blobs(320, seed=8)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    strategy = create_strategy("train-loss", selection_ratio=0.5, reuse_within=1_000_000, unseen="first")
    torch.manual_seed(0)
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, data,
                      TrainConfig(epochs=4, budget=0.5, eval_points=1, batch_size=16), progress_bar=False)
    result = trainer.fit()
    assert result.selection_forward_examples == 0 and result.test_accuracy > 0.5
    assert trainer.context.training_signals.seen().all()  # two sets' worth trained, the unseen first
    with pytest.raises(Exception, match="reuse_within > 0"):
        create_strategy("train-loss", unseen="first")
    with pytest.raises(Exception, match="unseen='forward'"):
        create_strategy("grad-norm-is", reuse_within=10, unseen="first")
    with pytest.raises(Exception, match="set uniform_share > 0"):  # stale values would make weights unbounded
        create_strategy("grad-norm-is", reuse_within=10)
    create_strategy("grad-norm-is", reuse_within=10, uniform_share=0.1)
    with pytest.raises(Exception, match="valid fields: selection_ratio, holdout_model"):
        create_strategy("bayesian", reuse_within=10)  # scores by fresh forwards only: no such parameter


def _known_loss_trainer(unseen: str, *, n: int = 320, plans: bool = True, checkpoint: Path | None = None,
                        callbacks: tuple = ()) -> Trainer:
    """train-loss by known losses on n blobs: n_b = 16 of n_B = 32, a pass of n // 32 steps."""
    x, y = make_blobs(n, seed=8)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    strategy = create_strategy("train-loss", selection_ratio=0.5, reuse_within=1_000_000, unseen=unseen)
    if not plans:
        strategy.plans_passes = False  # every choice made at its step, as without planning
    torch.manual_seed(0)
    return Trainer(create_model("mlp", (1, 8, 8), 4), strategy, data, data,
                   TrainConfig(epochs=6, budget=0.5, eval_points=4, batch_size=16), checkpoint_path=checkpoint,
                   callbacks=list(callbacks), progress_bar=False)


class _Batches(Callback):
    def __init__(self) -> None:
        self.indices: list[list[int]] = []

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        self.indices.append(batch.indices.tolist())


@pytest.mark.parametrize("unseen", ["forward", "first"])
def test_a_pass_planned_when_it_begins_chooses_what_each_step_would(unseen: str) -> None:
    runs = {}
    for plans in (True, False):
        batches = _Batches()
        trainer = _known_loss_trainer(unseen, plans=plans, callbacks=(batches,))
        made_at_step: list[int] = []
        choose = trainer.strategy.choose
        trainer.strategy.choose = (  # type: ignore[method-assign]
            lambda c, choose=choose, made=made_at_step: made.append(1) or choose(c))
        result = trainer.fit()
        runs[plans] = (batches.indices, result, trainer, len(made_at_step))
    (planned, result, trainer, at_step), (stepwise, reference, reference_trainer, every) = runs[True], runs[False]
    assert planned == stepwise and result.test_accuracy == reference.test_accuracy
    assert result.selection_forward_examples == reference.selection_forward_examples
    for a, b in zip(trainer.model.parameters(), reference_trainer.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert every == result.steps  # without a plan every choice is made at its step
    assert at_step == (10 if unseen == "forward" else 0)  # with one, only the first pass's forwarded rows


def test_a_pass_forwards_the_previous_passes_leftovers_together_when_it_begins() -> None:
    trainer = _known_loss_trainer("forward", n=330)  # 10 candidate sets a pass, 10 examples left over
    strategy = trainer.strategy
    calls: list[tuple[int, int]] = []
    forward = strategy.forward
    strategy.forward = lambda c: calls.append((strategy.steps, len(c))) or forward(c)  # type: ignore[method-assign]
    result = trainer.fit()
    assert calls[:10] == [(step, 32) for step in range(10)]  # the first pass: every candidate set forwarded
    later = calls[10:]
    assert later and all(step % 10 == 0 and 0 < size < 32 for step, size in later)  # one forward when a pass begins
    assert len({step for step, _ in later}) == len(later)
    assert result.selection_forward_examples == sum(size for _, size in calls) <= 330  # each example once


def test_an_interrupted_planned_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    straight, resumed = interrupted_and_resumed(lambda **kw: _known_loss_trainer("forward", n=330, **kw),
                                                tmp_path / "run.pt")
    assert resumed.state.step > 0
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["rho-loss", "irreducible-loss", "grad-norm"])
def test_a_planned_pass_equals_choosing_each_candidate_set_alone(name: str) -> None:
    ctx = _context()
    params = {} if name == "irreducible-loss" else {"reuse_within": 1000, "unseen": "first"}
    strategy = create_strategy(name, selection_ratio=0.25, **params)
    strategy.setup(ctx)
    if name != "grad-norm":
        strategy.holdout_logits = torch.randn(len(ctx.train), 4, generator=torch.Generator().manual_seed(5))
    known = torch.arange(0, 400, 3)  # a third of the examples known, the others never seen (ranked first)
    logits = torch.randn(len(known), 4, generator=torch.Generator().manual_seed(6))
    ctx.signals.record(known, logits, ctx.train.targets[known], torch.rand(len(known)), step=0)
    strategy.steps = 1
    first = strategy.candidates()
    plan = strategy.plan_pass(first, 0)
    rows = [first, *strategy.stream.ahead(len(first), whole=True)]
    assert len(plan.chosen) == len(rows) == 400 // 128
    for j, row in enumerate(rows):
        chosen = plan.choice(j * len(first))
        assert chosen is not None and chosen.tolist() == strategy.choose(row)[0].tolist()
    assert ctx.log.forward_examples == 0


def test_holdout_constants_are_each_candidates_own_and_follow_a_new_holdout_model() -> None:
    ctx = _context()
    strategy = create_strategy("rho-loss")
    strategy.setup(ctx)
    for seed in (7, 8):  # a second holdout model replaces the first's constants
        strategy.holdout_logits = torch.randn(len(ctx.train), 4, generator=torch.Generator().manual_seed(seed)) * 3
        candidates = torch.randperm(len(ctx.train), generator=torch.Generator().manual_seed(seed))[:60].view(6, 10)
        logits, targets = strategy.holdout_logits[candidates], ctx.train.targets[candidates]
        expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(6, 10)
        torch.testing.assert_close(strategy.irreducible_loss(candidates), expected, rtol=0, atol=0)
        log_p = torch.log_softmax(logits.double(), dim=2).gather(2, targets[..., None]).squeeze(2)
        torch.testing.assert_close(strategy.holdout_log_probs()[candidates], log_p, rtol=0, atol=0)
