"""CREST: Hutchinson diagonal, the quadratic model, the validity check, dropping, and resumption."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.errors import InvalidInputError
from coreselect.models import create_model
from coreselect.signals import gradient_and_hessian_diagonal
from coreselect.strategies import Budget, Context, StepOutput, create_strategy
from coreselect.strategies.crest import QuadraticModel, drop_learned


def _exact_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The Hessian of the weighted mean cross-entropy over all parameters, by autograd."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(vector, [math.prod(s) for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return (F.cross_entropy(torch.func.functional_call(model, params, (x,)), y, reduction="none") * w).mean()

    return torch.autograd.functional.hessian(loss_of, flat)


def test_hutchinson_matches_the_exact_hessian_diagonal() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    params = list(model.parameters())
    hessian = _exact_hessian(model, x, y, torch.ones(16))
    exact = hessian.diagonal()
    probes = 4000
    _, diag = gradient_and_hessian_diagonal(F.cross_entropy(model(x), y), params, probes=probes,
                                            generator=torch.Generator().manual_seed(1))
    estimate = torch.cat([d.reshape(-1) for d in diag])
    # z_i (Hz)_i = H_ii + Σ_{j≠i} z_i z_j H_ij: variance Σ_{j≠i} H_ij² per probe
    std_error = ((hessian.pow(2).sum(1) - exact.pow(2)) / probes).sqrt()
    assert ((estimate - exact).abs() <= 5 * std_error + 1e-7).all()
    assert (estimate - exact).abs().max() > 0  # an estimate, not the exact value


def test_quadratic_model_is_exact_on_a_quadratic() -> None:
    torch.manual_seed(2)
    a, b, anchor = torch.rand(6) + 0.5, torch.randn(6), torch.randn(6)
    w = anchor.clone().requires_grad_(True)
    loss = 0.5 * (a * w * w).sum() + (b * w).sum() + 3.0
    (grad,), (diag,) = gradient_and_hessian_diagonal(loss, [w], probes=1)
    torch.testing.assert_close(diag, a)  # a diagonal Hessian: Hutchinson is exact with one probe
    model = QuadraticModel(float(loss.detach()), grad, diag, anchor)
    for _ in range(3):
        point = anchor + torch.randn(6)
        true = float(0.5 * (a * point * point).sum() + (b * point).sum() + 3.0)
        assert model.predict(point) == pytest.approx(true, rel=1e-5)


def _context(n: int = 400) -> Context:
    x, y = make_blobs(n, seed=8)
    torch.manual_seed(0)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    return Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.5, 4, n, 16))


def test_check_fires_when_the_loss_surface_changes_and_not_otherwise() -> None:
    ctx = _context()
    strategy = create_strategy("crest", approx_with_coreset=False, random_subset_size=0.1)
    strategy.setup(ctx)
    next(strategy.batches())  # the first region: subsets, coresets, quadratic model at the current weights
    assert strategy.state.updates == 1
    assert strategy.predicted_loss() == pytest.approx(strategy.state.quadratic.base_loss)
    assert not strategy._model_failed()  # nothing moved: F(0) is the subsets' loss itself
    with torch.no_grad():
        ctx.model.fc.weight.mul_(8.0)  # a different loss surface
    assert strategy._model_failed()


@pytest.mark.parametrize("check_size", [None, 37])
def test_anchor_is_the_checked_loss_itself(check_size: int | None) -> None:
    ctx = _context()
    strategy = create_strategy("crest", random_subset_size=0.1, check_size=check_size, anchor_on_subsets=True)
    strategy.setup(ctx)
    next(strategy.batches())  # F is fitted on the weighted coresets in train mode ...
    ctx.model.eval()
    with torch.no_grad():  # ... but anchored on the unweighted eval-mode loss of the points the check uses
        x, y = ctx.train[strategy.state.checked]
        checked_loss = float(F.cross_entropy(ctx.model(x), y))
    assert len(strategy.state.checked) == (check_size or len(strategy.state.subsets))
    assert set(strategy.state.checked.tolist()) <= set(strategy.state.subsets.tolist())
    assert strategy.predicted_loss() == pytest.approx(checked_loss, rel=1e-5)
    official = create_strategy("crest", random_subset_size=0.1)
    official.setup(ctx := _context())
    next(official.batches())
    with torch.no_grad():  # the official anchor: the weighted loss of the coresets (no BatchNorm here)
        x, y = ctx.train[official.state.coreset]
        coreset_loss = float((F.cross_entropy(ctx.model(x), y, reduction="none") * official.state.weights).mean())
    assert official.predicted_loss() == pytest.approx(coreset_loss, rel=1e-5)


def test_new_region_after_a_failed_check() -> None:
    ctx = _context()
    strategy = create_strategy("crest", random_subset_size=0.1)
    strategy.setup(ctx)
    stream = strategy.batches()
    batch = next(stream)
    assert len(batch) == 16 and batch.weights is not None
    assert len(strategy.state.coreset) == 5 * 16  # P = 5 mini-batch coresets of m = 16
    assert float(strategy.state.weights.mean()) == pytest.approx(1.0)
    strategy.observe(batch, StepOutput(0, torch.zeros(16, 4), torch.zeros(16)))
    with torch.no_grad():
        ctx.model.fc.weight.mul_(8.0)
    next(stream)
    assert strategy.state.updates == 2 and strategy.state.reset_step == 1
    assert len(ctx.log.rounds) == 2


def test_dropping_never_empties_a_class_and_respects_the_pool_minimum() -> None:
    targets = torch.arange(100) % 4
    pool = torch.ones(100, dtype=torch.bool)
    table = torch.full((5, 100), -1.0)
    table[0] = 0.01  # every example looks learned ...
    table[0, targets == 1] = 1.0  # ... except class 1
    kept = drop_learned(pool, table, targets, 0.1, minimum_per_class=5, minimum_pool=10)
    for c in range(4):  # classes 0, 2, 3 would be empty: they keep all their examples
        assert int((kept & (targets == c)).sum()) == 25
    table[0, targets == 0] = 1.0
    table[0, targets == 2] = 1.0
    class_3 = torch.nonzero(targets == 3).squeeze(1)
    table[0, class_3[:5]] = 1.0  # five of class 3 are still hard: the other twenty may go
    kept = drop_learned(pool, table, targets, 0.1, minimum_per_class=5, minimum_pool=10)
    assert int(kept.sum()) == 80 and kept[class_3].tolist() == [True] * 5 + [False] * 20
    never_seen = torch.full((5, 100), -1.0)
    assert torch.equal(drop_learned(pool, never_seen, targets, 0.1, minimum_per_class=5, minimum_pool=10), pool)
    assert torch.equal(drop_learned(pool, table, targets, 0.1, minimum_per_class=5, minimum_pool=80), pool)


def test_regions_after_a_drop_draw_their_subsets_from_the_smaller_pool_only() -> None:
    strategy, _, _, _ = _train_crest(45, check_with="steps", check_thresh=0.01, drop_learned=True, drop_interval=1,
                                     watch_interval=1, drop_thresh=0.002, min_pool_fraction=0.2)
    st = strategy.state
    assert int(st.pool.sum()) < len(st.pool) and st.last_drop_epoch >= 2  # dropped, then selected again
    assert st.updates > 3 and bool(st.pool[st.subsets].all())  # the latest region saw the pool of its time only


def _checkpointed(state: dict) -> dict:
    """``state`` written and read back as a checkpoint is: no tensor shared with the live strategy, whose
    exponential averages are updated in place."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_crest_resumes_its_exact_stream() -> None:
    def drive(strategy, steps: int) -> list[list[int]]:
        stream, seen = strategy.batches(), []
        for step in itertools.count():
            if step == steps:
                return seen
            batch = next(stream)
            seen.append(batch.indices.tolist())
            strategy.observe(batch, StepOutput(step, torch.zeros(len(batch), 4), torch.zeros(len(batch))))
        return seen

    original = create_strategy("crest", random_subset_size=0.1, check_interval=2)
    original.setup(_context())
    drive(original, 7)
    state = _checkpointed(original.state_dict())
    expected = drive(original, 9)
    resumed = create_strategy("crest", random_subset_size=0.1, check_interval=2)
    resumed.setup(_context())
    resumed.load_state_dict(state)
    assert drive(resumed, 9) == expected


def _train_crest(steps: int, hand_gradients: bool = False, **params):  # type: ignore[no-untyped-def]
    """CREST driven by a plain SGD loop on blobs. Returns the strategy; each check's outcome as this loop expects
    it (from F at each step's parameters and the weighted step losses it tracks itself) beside the region change
    CREST made; the examples its regions forwarded for selection; and (prediction, loss) of each region's first
    step. With ``batch_intercepts`` the loop shifts F to each batch's own weighted loss at the region's start,
    which it computes itself by a forward at the region's anchor. With ``hand_gradients`` the loop hands each
    step's gradient when CREST asks for it, and ``strategy.asked`` lists (region, asked, F's ĝ and anchor after
    the step equal to that gradient and to the step's starting weights, the step's batch one whole coreset)."""
    ctx = _context()
    ctx.hands_step_gradients = hand_gradients
    strategy = create_strategy("crest", random_subset_size=0.1, **params)
    strategy.setup(ctx)
    optimizer = torch.optim.SGD(ctx.model.parameters(), lr=0.5)
    stream = strategy.batches()
    predicted, actual, selection_forwards = 0.0, 0.0, 0
    decisions, region_starts, anchor_losses, asked_by_region = [], [], torch.zeros(0), []
    for _ in range(steps):
        checks_before, updates_before = strategy.state.checks, strategy.state.updates
        expected = abs(actual - predicted) > strategy.params.check_thresh * actual
        batch = next(stream)
        if strategy.state.checks > checks_before:  # this draw checked the window since the last check
            decisions.append((expected, strategy.state.updates > updates_before))
            predicted, actual = 0.0, 0.0
        new_region = strategy.state.updates > updates_before
        if new_region:  # a new model, a new window
            predicted, actual = 0.0, 0.0
            selection_forwards += len(strategy.state.subsets)
            with torch.no_grad():  # every example's loss at the region's anchor (the model has not moved yet)
                anchor_losses = F.cross_entropy(ctx.model(ctx.train.inputs), ctx.train.targets, reduction="none")
        prediction = strategy.predicted_loss()  # F at the parameters this step sees
        if params.get("batch_intercepts"):
            own = float((anchor_losses[batch.indices] * batch.weights).mean())
            prediction += own - strategy.state.quadratic.base_loss
        x, y = ctx.train[batch.indices]
        losses = F.cross_entropy(ctx.model(x), y, reduction="none")
        loss = (losses * batch.weights).mean()
        if new_region:
            region_starts.append((prediction, float(loss.detach())))
        predicted, actual = predicted + prediction, actual + float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        asked = strategy.needs_step_gradient
        weights = torch.cat([p.detach().reshape(-1) for p in ctx.model.parameters()])
        gradient = [p.grad.clone() for p in ctx.model.parameters()] if asked else None
        optimizer.step()
        strategy.observe(batch, StepOutput(0, torch.zeros(len(batch), 4), losses.detach(), gradient=gradient))
        if new_region:
            fitted = strategy.state.quadratic
            folded = gradient is not None and torch.equal(fitted.anchor, weights) and torch.allclose(
                fitted.grad, torch.cat([g.reshape(-1) for g in gradient]), atol=1e-7)
            whole = any(torch.equal(batch.indices, block) for block in strategy.state.coreset.split(16))
            asked_by_region.append((strategy.state.updates, asked, folded, whole))
    strategy.asked = asked_by_region
    return strategy, decisions, selection_forwards, region_starts


def test_check_with_steps_forwards_nothing_and_decides_on_the_steps_own_losses() -> None:
    strategy, decisions, selection_forwards, _ = _train_crest(30, check_with="steps", check_thresh=0.05)
    assert len(decisions) >= 10
    assert all(expected == made for expected, made in decisions), decisions
    assert any(made for _, made in decisions) and not all(made for _, made in decisions)
    assert strategy.context.log.forward_examples == selection_forwards  # no check forwarded anything
    official, _, official_selection, _ = _train_crest(30, check_thresh=0.05)
    assert official.state.checks > 0 and official.context.log.forward_examples > official_selection


def test_batch_intercepts_predict_each_batch_from_its_own_loss_at_the_region_start() -> None:
    _, decisions, _, starts = _train_crest(30, check_with="steps", check_thresh=0.05, batch_intercepts=True)
    assert len(decisions) >= 5 and all(expected == made for expected, made in decisions), decisions
    # at a region's first step δ = 0: F with the batch's own intercept is that batch's loss, exactly
    assert len(starts) >= 2 and all(math.isclose(p, a, rel_tol=1e-5) for p, a in starts), starts
    _, _, _, mean_starts = _train_crest(30, check_with="steps", check_thresh=0.05)
    assert not all(math.isclose(p, a, rel_tol=1e-3) for p, a in mean_starts)  # the region's mean is not


@pytest.mark.parametrize("params", [{"batch_intercepts": True}, {"check_with": "steps", "batch_intercepts": True,
                                                                  "approx_with_coreset": False}])
def test_batch_intercepts_without_step_checks_on_the_coresets_is_refused(params: dict) -> None:
    strategy = create_strategy("crest", random_subset_size=0.1, **params)
    with pytest.raises(InvalidInputError, match="check_with=steps and approx_with_coreset"):
        strategy.setup(_context())


def test_fit_from_steps_folds_the_first_steps_gradient_and_fits_only_where_the_hessian_is_drawn() -> None:
    params = {"check_with": "steps", "check_thresh": 0.05, "batch_intercepts": True, "hessian_every": 3,
              "beta1": 0.0}  # β₁ = 0: ĝ is the latest gradient folded in
    strategy, decisions, _, starts = _train_crest(40, hand_gradients=True, fit_from_steps=True, **params)
    assert len(strategy.asked) >= 5, strategy.asked
    for region, asked, folded, whole in strategy.asked:
        assert asked == ((region - 1) % 3 != 0)  # regions 1, 4, 7, ... draw the Hessian: they fit F themselves
        assert folded == asked  # otherwise ĝ is the step's own gradient at the region's anchor ...
        assert whole or not asked  # ... on one whole mini-batch coreset, the batch a one-batch fit fits
    assert not all(whole for _, _, _, whole in strategy.asked)  # the regions that fit F shuffle their coresets
    assert all(expected == made for expected, made in decisions), decisions
    assert all(math.isclose(p, a, rel_tol=1e-5) for p, a in starts), starts  # δ = 0: each batch's own loss
    # a loop that hands no gradients: every region fits F, the same stream as without the option
    inert, inert_decisions, _, inert_starts = _train_crest(40, fit_from_steps=True, **params)
    _, plain_decisions, _, plain_starts = _train_crest(40, **params)
    assert not any(asked for _, asked, _, _ in inert.asked)
    assert inert_decisions == plain_decisions and inert_starts == plain_starts
    with pytest.raises(InvalidInputError, match="needs batch_intercepts"):
        create_strategy("crest", check_with="steps", fit_from_steps=True).setup(_context())


def test_grow_interval_doubles_the_check_interval_while_the_model_holds() -> None:
    strategy, decisions, _, _ = _train_crest(40, check_with="steps", check_thresh=1e9, grow_interval=True)
    assert decisions and not any(made for _, made in decisions)  # τ = 1e9: the model always holds
    assert strategy.state.interval == min(2 ** strategy.state.checks, strategy.steps_per_epoch)
    assert strategy.state.checks < 40 // 2  # fewer checks than at a fixed interval of 1


@pytest.mark.parametrize("params", [{"check_with": "steps"}, {"check_with": "steps", "grow_interval": True},
                                    {"check_with": "steps", "batch_intercepts": True},
                                    {"check_with": "steps", "curvature": "diagonal"},
                                    {"check_with": "steps", "hessian_every": 2, "check_thresh": 0.01},
                                    {"check_with": "steps", "check_thresh": 0.01},
                                    {"check_with": "steps", "batch_intercepts": True, "fit_from_steps": True,
                                     "hessian_every": 2, "check_thresh": 0.01}])
def test_crest_with_step_checks_resumes_its_exact_stream(params: dict) -> None:
    strategy, _, _, _ = _train_crest(12, hand_gradients=True, **params)
    state = _checkpointed(strategy.state_dict())
    resumed = create_strategy("crest", random_subset_size=0.1, **params)
    resumed.setup(_context())
    resumed.context.hands_step_gradients = True
    resumed.context.model.load_state_dict(strategy.context.model.state_dict())  # as the trainer restores it
    resumed.load_state_dict(state)
    assert resumed.state.window == strategy.state.window and resumed.state.interval == strategy.state.interval
    a, b = strategy.batches(), resumed.batches()
    for step in range(5):
        x, y = next(a), next(b)
        assert torch.equal(x.indices, y.indices) and torch.equal(x.weights, y.weights)
        assert strategy.needs_step_gradient == resumed.needs_step_gradient
        for s, batch in ((strategy, x), (resumed, y)):
            gradient = [torch.full_like(p, 0.01 * step) for p in s.context.model.parameters()]
            s.observe(batch, StepOutput(0, torch.zeros(len(batch), 4), torch.ones(len(batch)),
                                        gradient=gradient if s.needs_step_gradient else None))


def test_fit_batches_fits_the_quadratic_on_drawn_batches_of_the_coreset() -> None:
    ctx = _context()
    strategy = create_strategy("crest", random_subset_size=0.1, num_coresets=4, fit_batches=1, beta1=0.0,
                               beta2=0.0, hessian_eps=0.0)
    strategy.setup(ctx)
    start = ctx.model.state_dict()
    next(strategy.batches())  # the first region: 4 coreset batches, the model fitted on one of them
    assert len(strategy.state.coreset) == 4 * 16
    m, model = 16, ctx.model
    candidates = []
    for first in range(0, len(strategy.state.coreset), m):  # each batch's weighted loss gradient, by autograd
        model.load_state_dict(start)
        model.train()
        idx = strategy.state.coreset[first:first + m]
        x, y = ctx.train[idx]
        loss = (F.cross_entropy(model(x), y, reduction="none") * strategy.state.weights[first:first + m]).mean()
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        candidates.append((float(loss.detach()), torch.cat([g.reshape(-1) for g in grads])))
    fitted = strategy.state.quadratic
    matches = [i for i, (loss, grad) in enumerate(candidates)
               if math.isclose(fitted.base_loss, loss, rel_tol=1e-5) and torch.allclose(fitted.grad, grad,
                                                                                        atol=1e-6)]
    assert len(matches) == 1  # exactly one drawn batch, not the mean of all four
    full = create_strategy("crest", random_subset_size=0.1, num_coresets=4, beta1=0.0, beta2=0.0, hessian_eps=0.0)
    full.setup(_context())
    next(full.batches())
    mean_gradient = torch.stack([g for _, g in candidates]).mean(0)
    assert torch.allclose(full.state.quadratic.grad, mean_gradient, atol=1e-6)  # default: all batches


def test_fit_batches_takes_the_other_batches_intercepts_from_the_selection_forward() -> None:
    ctx = _context()
    strategy = create_strategy("crest", random_subset_size=0.1, num_coresets=4, fit_batches=1, check_with="steps",
                               batch_intercepts=True)
    strategy.setup(ctx)
    with torch.no_grad():  # every example's loss at the weights the region starts from (the MLP has no dropout)
        expected = F.cross_entropy(ctx.model(ctx.train.inputs), ctx.train.targets, reduction="none")
    next(strategy.batches())
    st = strategy.state
    assert len(st.coreset) == 4 * 16  # one batch fitted, three left out
    assert torch.allclose(st.intercepts, expected[st.coreset], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(st.intercepts, torch.full_like(st.intercepts, st.quadratic.base_loss), atol=1e-3)


def _relative(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((estimate - reference).norm() / reference.norm())


def test_curvature_diagonal_estimates_diag_h_and_the_official_rms_each_row_norm() -> None:
    x, y = make_blobs(200, seed=5)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    fits, beta2 = 1500, 0.998
    estimates = {}
    for curvature in ("diagonal", "rms"):
        ctx = Context(model=model, train=data, budget=Budget(0.5, 4, 200, 16))
        strategy = create_strategy("crest", num_coresets=1, random_subset_size=0.2, curvature=curvature,
                                   beta2=beta2, hessian_eps=0.0)
        strategy.setup(ctx)
        next(strategy.batches())  # one coreset batch of 16, fitted once; the model does not move
        for _ in range(fits - 1):
            strategy._fit_quadratic()
        estimates[curvature] = strategy.state.quadratic.hess
        idx, weights = strategy.state.coreset, strategy.state.weights
    assert len(idx) == 16
    hessian = _exact_hessian(model, *data[idx], weights)
    diagonal, row_norms = hessian.diagonal(), hessian.norm(dim=1)
    # a bias-corrected exponential average of `fits` independent estimates z_i (Hz)_i, each of mean H_ii and
    # variance Σ_{j≠i} H_ij²: its variance is that times the sum of the squared averaging weights
    averaging = (1 - beta2) * beta2 ** torch.arange(fits, dtype=torch.float64) / (1 - beta2**fits)
    std_error = ((row_norms.pow(2) - diagonal.pow(2)).double() * averaging.pow(2).sum()).sqrt().float()
    assert ((estimates["diagonal"] - diagonal).abs() <= 5 * std_error + 1e-6).all()
    # E[(z_i (Hz)_i)²] = Σ_j H_ij²: the official √(average of squares) estimates each row's norm, not |H_ii|
    assert _relative(estimates["rms"], row_norms) < 0.05
    assert _relative(diagonal.abs(), row_norms) > 0.3  # the two quantities differ well beyond that tolerance
    assert ((estimates["rms"] - diagonal).abs() > 5 * std_error + 1e-6).any()  # the band tells the two apart


def test_hessian_every_draws_the_curvature_in_every_kth_fit_and_the_gradient_in_every_fit() -> None:
    ctx = _context()
    strategy = create_strategy("crest", random_subset_size=0.1, num_coresets=1, batch_num_mul=0.01, hessian_every=3,
                               beta1=0.0, beta2=0.0, hessian_eps=0.0)  # F: the latest gradient, the latest draw's |d|
    strategy.setup(ctx)
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    curvatures = []
    for region in range(1, 6):
        if region == 1:
            next(strategy.batches())
        else:
            with torch.no_grad():  # the model moves between regions
                for p in params:
                    p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(region)))
            strategy._new_region()
        st = strategy.state
        assert st.updates == region and len(st.coreset) == 16  # one coreset batch, the one fitted
        ctx.model.train()
        x, y = ctx.train[st.coreset]
        loss = (F.cross_entropy(ctx.model(x), y, reduction="none") * st.weights).mean()
        gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
        assert torch.allclose(st.quadratic.grad, gradient, atol=1e-6)  # every region fits its gradient
        assert st.hess_count == (region + 2) // 3  # drawn in regions 1 and 4
        curvatures.append(st.quadratic.hess)
    assert torch.equal(curvatures[0], curvatures[1]) and torch.equal(curvatures[0], curvatures[2])
    assert not torch.allclose(curvatures[3], curvatures[0]) and torch.equal(curvatures[3], curvatures[4])
    every = create_strategy("crest", random_subset_size=0.1, num_coresets=1, beta1=0.0, beta2=0.0,
                            hessian_eps=0.0)  # the default draws at each fit
    every.setup(_context())
    next(every.batches())
    every._new_region()
    assert every.state.hess_count == 2 and not torch.equal(every.state.quadratic.hess, curvatures[0])
