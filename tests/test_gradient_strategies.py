"""CRAIG, GradMatch and GLISTER on a small problem, checked against independent computations."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from conftest import assert_resumes_exact_stream, make_blobs
from coreselect.data import InMemoryDataset
from coreselect.errors import InvalidInputError
from coreselect.models import create_model
from coreselect.strategies import Budget, Context, create_strategy
from coreselect.strategies.glister import validation_alignment, validation_gradient
from coreselect.submodular import class_quotas, per_class_facility_location


def _context(with_val: bool = True, n: int = 300, batch_size: int = 16) -> Context:
    x, y = make_blobs(n + 100, seed=4)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    torch.manual_seed(0)
    model = create_model("mlp", (1, 8, 8), 4)
    val = data.subset(torch.arange(n, n + 100)) if with_val else None
    return Context(model=model, train=data.subset(torch.arange(n)), val=val,
                   budget=Budget(0.2, 4, n, batch_size), learning_rate=0.05)


def test_craig_selects_per_class_facility_location_on_logit_gradients() -> None:
    ctx = _context()
    strategy = create_strategy("craig", max_weight=None)  # the paper's uncapped cluster sizes
    strategy.setup(ctx)
    batch = next(strategy.batches())
    (selection,) = ctx.log.rounds
    with torch.no_grad():
        probs = torch.softmax(ctx.model.eval()(ctx.train.inputs), dim=1)
    proxies = probs - F.one_hot(ctx.train.targets, 4).float()
    expected = per_class_facility_location(proxies, ctx.train.targets, 60)
    assert selection.indices.tolist() == expected.indices.tolist()
    torch.testing.assert_close(selection.weights, expected.weights)
    assert ctx.log.forward_examples == 300
    assert set(batch.indices.tolist()) <= set(selection.indices.tolist())


def test_craig_reselects_on_schedule_and_warm_starts() -> None:
    ctx = _context()
    strategy = create_strategy("craig", select_every=2, warm_start_epochs=1, embedding="last_layer")
    strategy.setup(ctx)
    list(itertools.islice(strategy.batches(), 4 * 4))  # 4 passes of 60 examples in batches of 16
    assert [r.weights is None for r in ctx.log.rounds] == [True, False, False]  # warm-up, then epochs 1, 3
    assert all(len(r.indices) == 60 for r in ctx.log.rounds)


@pytest.mark.parametrize("valid", [False, True])
@pytest.mark.parametrize("variant", ["per_batch", "per_class"])
def test_gradmatch_selection_shape_and_weights(variant: str, valid: bool) -> None:
    ctx = _context()
    strategy = create_strategy("gradmatch", variant=variant, valid=valid)
    strategy.setup(ctx)
    next(strategy.batches())
    (selection,) = ctx.log.rounds
    assert len(selection.indices) == 60 and len(set(selection.indices.tolist())) == 60
    assert float(selection.weights.mean()) == pytest.approx(1.0) and (selection.weights > 0).all()
    if variant == "per_batch":  # whole mini-batches of 16 sharing one weight each (the last may be cut)
        weights = selection.weights[: 16 * (60 // 16)].view(-1, 16)
        assert (weights == weights[:, :1]).all()


def test_glister_gain_is_the_validation_gradient_alignment() -> None:
    ctx = _context()
    model = ctx.model.eval()
    x, y = ctx.train[torch.arange(5)]
    vx, vy = ctx.val.inputs, ctx.val.targets
    params = {k: v.detach() for k, v in model.named_parameters()}

    def head_loss(head, inputs, targets):
        return F.cross_entropy(functional_call(model, {**params, **head}, (inputs,)), targets)

    head = {"fc.weight": params["fc.weight"], "fc.bias": params["fc.bias"]}
    val_grad = grad(head_loss)(head, vx, vy)
    expected = torch.stack([
        sum((g * val_grad[k]).sum() for k, g in grad(head_loss)(head, x[i : i + 1], y[i : i + 1]).items())
        for i in range(5)
    ])
    from coreselect.signals import forward_in_batches, logit_gradients

    train_out = forward_in_batches(model, x, with_features=True)
    val_out = forward_in_batches(model, vx, with_features=True)
    grad_w, grad_b = validation_gradient(val_out.logits, F.one_hot(vy, 4).float(), val_out.features)
    torch.testing.assert_close(grad_w, val_grad["fc.weight"])
    gains = validation_alignment(logit_gradients(train_out.logits, y), train_out.features, grad_w, grad_b)
    torch.testing.assert_close(gains, expected)


def test_glister_needs_validation_and_selects_distinct_examples() -> None:
    with pytest.raises(InvalidInputError, match="--val-fraction"):
        create_strategy("glister").setup(_context(with_val=False))
    ctx = _context()
    strategy = create_strategy("glister", warm_start_epochs=0)  # selects at once
    strategy.setup(ctx)
    next(strategy.batches())
    (selection,) = ctx.log.rounds
    assert len(set(selection.indices.tolist())) == 60 and selection.weights is None
    with pytest.raises(InvalidInputError, match="--val-fraction"):
        create_strategy("gradmatch", valid=True).setup(_context(with_val=False))


@pytest.mark.parametrize("name", ["craig", "gradmatch", "stable"])
def test_batch_weights_have_mean_one_within_each_batch_unless_kept_at_the_selections_scale(name: str) -> None:
    streams = {}
    for mode in ("batch", "selection"):
        ctx = _context()
        strategy = create_strategy(name, batch_weights=mode)
        strategy.setup(ctx)
        streams[mode] = list(itertools.islice(strategy.batches(), 3))
        selection = ctx.log.rounds[0]
        if len(set(selection.indices.tolist())) == len(selection.indices):  # (stable's may repeat an example)
            of = dict(zip(selection.indices.tolist(), selection.weights.tolist(), strict=True))
            for batch in streams[mode] if mode == "selection" else ():  # the selection's own weights
                torch.testing.assert_close(batch.weights, torch.tensor([of[i] for i in batch.indices.tolist()]))
    for normalised, kept in zip(streams["batch"], streams["selection"], strict=True):  # the same draws
        assert torch.equal(normalised.indices, kept.indices)
        torch.testing.assert_close(normalised.weights, kept.weights * len(kept) / kept.weights.sum())
        losses = torch.rand(len(kept))  # a weighted average: never above the largest loss, whatever the weights
        assert float(normalised.weighted_mean(losses)) <= float(losses.max()) + 1e-6


@pytest.mark.parametrize("name", ["craig", "gradmatch"])
def test_max_weight_clips_the_selections_weights_and_rescales_them_to_mean_one(name: str) -> None:
    def first_round(cap: float | None):
        ctx = _context()
        strategy = create_strategy(name, max_weight=cap)
        strategy.setup(ctx)
        next(strategy.batches())
        return ctx.log.rounds[0]

    plain = first_round(None)
    cap = (1.0 + float(plain.weights.max())) / 2  # between the mean and the largest weight: some are clipped
    clipped = first_round(cap)
    assert torch.equal(plain.indices, clipped.indices) and float(plain.weights.max()) > cap > 1.0
    expected = plain.weights.clamp(max=cap)
    torch.testing.assert_close(clipped.weights, expected * len(expected) / expected.sum())


def test_glister_selects_each_class_in_proportion_against_its_own_validation_examples() -> None:
    ctx = _context()
    strategy = create_strategy("glister", warm_start_epochs=0)
    strategy.setup(ctx)
    next(strategy.batches())
    (selection,) = ctx.log.rounds
    targets = ctx.train.targets
    counts = torch.bincount(targets, minlength=4)
    assert torch.bincount(targets[selection.indices], minlength=4).tolist() == \
        class_quotas(counts, 60, proportional=True).tolist()
    assert len(set(selection.indices.tolist())) == 60
    ctx = _context()
    whole = create_strategy("glister", per_class=False, warm_start_epochs=0)
    whole.setup(ctx)
    next(whole.batches())
    assert len(set(ctx.log.rounds[0].indices.tolist())) == 60


def test_glister_looks_ahead_by_the_configured_peak_learning_rate_not_the_current_one() -> None:
    def picks(peak: float, eta: float | None = None) -> list[int]:
        ctx = _context()
        ctx.learning_rate, ctx.peak_learning_rate = 0.004, peak  # one-cycle's start: the peak / 25
        strategy = create_strategy("glister", eta=eta, warm_start_epochs=0)
        strategy.setup(ctx)
        next(strategy.batches())
        return sorted(ctx.log.rounds[0].indices.tolist())

    assert picks(0.5) == picks(0.0, eta=0.5)  # the default step is the peak, as an explicit eta
    assert picks(0.0) == picks(0.0, eta=0.004) != picks(0.5)  # a loop that tells no peak: the current LR


@pytest.mark.parametrize("name", ["craig", "gradmatch", "glister"])
def test_resumes_the_exact_stream(name: str) -> None:
    assert_resumes_exact_stream(name, _context, skip=9, take=12)
