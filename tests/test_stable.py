"""Stable coresets: posterior draws that leave the model untouched, and the σ = 0 limit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.models import create_model, perturbed, perturbed_parameters
from coreselect.signals import logit_gradients
from coreselect.strategies import Budget, Context, create_strategy
from coreselect.strategies.minibatch_coresets import class_members, stratified_subsets, uniform_draws
from coreselect.submodular import per_class_facility_location


def _context(model_name: str = "mlp", n: int = 400) -> Context:
    x, y = make_blobs(n, seed=3)
    torch.manual_seed(0)
    data = InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)
    return Context(model=create_model(model_name, (1, 8, 8), 4), train=data, budget=Budget(0.25, 4, n, 20))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_selection_leaves_weights_and_running_statistics_bit_identical() -> None:
    ctx = _context("resnet20")
    model = ctx.model
    model.train()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for _ in range(3):
            model(ctx.train.inputs[:64])
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    before = _snapshot(model)
    strategy = create_strategy("stable", sigma=0.5, random_subset_size=0.2)
    strategy.setup(ctx)
    selection = strategy.reselect(ctx.budget.epoch_examples)
    assert len(selection.indices) == 5 * 20 and float(selection.weights.mean()) == pytest.approx(1.0)
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert model.training  # mode restored


def test_noise_acts_only_inside_the_block_and_on_the_chosen_parameters() -> None:
    ctx = _context("resnet20")
    model, x = ctx.model.eval(), ctx.train.inputs[:16]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        clean = model(x)
        with perturbed(model, 0.3, generator=g):  # auto: BatchNorm γ, β only
            noisy = model(x)
            conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
            assert torch.equal(conv.weight, _context("resnet20").model.state_dict()[
                next(k for k in model.state_dict() if k.endswith("weight"))])
        again = model(x)
    assert not torch.allclose(clean, noisy) and torch.equal(clean, again)
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in perturbed_parameters(model, "auto")} == bn
    mlp = create_model("mlp", (1, 8, 8), 4)
    assert len(perturbed_parameters(mlp, "auto")) == len(list(mlp.parameters()))  # no norm layers: all
    last = list(mlp.modules())[-1]
    assert [id(p) for p in perturbed_parameters(mlp, "last")] == [id(p) for p in last.parameters()]

    layer_norm = nn.Sequential(nn.Linear(5, 5), nn.LayerNorm(5))
    inputs = torch.randn(3, 5)
    with torch.no_grad():
        plain = layer_norm(inputs)
        with perturbed(layer_norm, 0.1, target="norm", generator=g):
            shifted = layer_norm(inputs)
        assert not torch.allclose(plain, shifted) and torch.equal(plain, layer_norm(inputs))  # hook removed


@pytest.mark.parametrize("n", [10, 6])  # 3² ≤ 10: i.i.d. draws with repeats redrawn; 3² > 6: permutations
def test_uniform_draws_are_uniform_over_the_k_subsets(n: int) -> None:
    from itertools import combinations
    from math import comb

    k, rows = 3, 24000
    draws = uniform_draws(n, k, rows, torch.Generator().manual_seed(0))
    assert draws.shape == (rows, k) and draws.min() >= 0 and draws.max() < n
    ordered = draws.sort(1).values
    assert bool((ordered[:, 1:] != ordered[:, :-1]).all())  # distinct within each row
    code = {s: i for i, s in enumerate(combinations(range(n), k))}  # every k-subset equally often: chi-square
    counts = torch.bincount(torch.tensor([code[tuple(r)] for r in ordered.tolist()]), minlength=comb(n, k)).double()
    expected = rows / comb(n, k)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = comb(n, k) - 1
    assert chi2 < df + 5 * (2 * df) ** 0.5  # about 5 standard deviations of the chi-square statistic
    first = torch.bincount(draws[:, 0], minlength=n).double()  # the row's order is random too
    assert float((first / rows - 1 / n).abs().max()) < 5 * (1 / n / rows) ** 0.5


def test_stratified_subsets_are_independent_class_balanced_draws() -> None:
    targets = torch.arange(1000) % 4
    members = class_members(torch.arange(1000), targets)
    subsets = stratified_subsets(members, 40, 3, torch.Generator().manual_seed(1))
    assert len(subsets) == 3
    for subset in subsets:
        assert len(subset.unique()) == 40 and torch.bincount(targets[subset]).tolist() == [10] * 4
    assert not torch.equal(subsets[0].sort().values, subsets[1].sort().values)
    small = class_members(torch.arange(10), torch.arange(10) % 2)  # a class smaller than its share: all of it
    assert [sorted(s.tolist()) for s in stratified_subsets(small, 40, 2, torch.Generator())] == [list(range(10))] * 2


def test_sigma_zero_gives_m_copies_and_the_plain_minibatch_coresets() -> None:
    g = torch.Generator().manual_seed(5)  # continuous random inputs: no tied facility-location gains
    data = InMemoryDataset(torch.randn(400, 1, 8, 8, generator=g), torch.randint(0, 4, (400,), generator=g), 4)
    torch.manual_seed(0)
    ctx = Context(model=create_model("mlp", (1, 8, 8), 4), train=data, budget=Budget(0.25, 4, 400, 20))
    strategy = create_strategy("stable", sigma=0.0, samples=3, random_subset_size=0.2)
    strategy.setup(ctx)
    subset = torch.arange(0, 400, 7)
    smoothed = strategy.smoothed_proxies(subset)
    with torch.no_grad():
        plain = logit_gradients(ctx.model(ctx.train.inputs[subset]), ctx.train.targets[subset])
    torch.testing.assert_close(smoothed, torch.cat([plain] * 3, dim=1), rtol=0, atol=0)

    state = strategy.generator.get_state()
    selection = strategy.reselect(ctx.budget.epoch_examples)
    g = torch.Generator()
    g.set_state(state)
    members = class_members(torch.arange(400), ctx.train.targets)
    subsets = stratified_subsets(members, 80, 5, g)  # the same draws (0.2 of 400)
    expected, weights = [], []
    for s in subsets:  # CRAIG within each random subset: per-class facility location on plain proxies
        with torch.no_grad():
            e = logit_gradients(ctx.model(ctx.train.inputs[s]), ctx.train.targets[s])
        coreset = per_class_facility_location(e, ctx.train.targets[s], 20)
        expected.append(s[coreset.indices])
        weights.append(coreset.weights)
    assert torch.equal(selection.indices, torch.cat(expected))
    w = torch.cat(weights)
    torch.testing.assert_close(selection.weights, w / w.mean())


def test_noise_changes_the_selection_and_resumes_exactly() -> None:
    from conftest import assert_resumes_exact_stream

    plain, noisy = _context(), _context()
    a, b = (create_strategy("stable", sigma=sigma, random_subset_size=0.2) for sigma in (0.0, 2.0))
    a.setup(plain)
    b.setup(noisy)
    assert not torch.equal(a.reselect(100).indices, b.reselect(100).indices)
    assert_resumes_exact_stream("stable", _context, skip=7, take=9)


# several subsets (overlapping, as independent draws may), all forwarded at once: of equal sizes (one batched
# product of all heads) and not
@pytest.mark.parametrize("subsets", [[torch.arange(0, 200, 3), torch.arange(1, 200, 3), torch.arange(0, 134, 2)],
                                     [torch.arange(0, 200, 3), torch.arange(1, 200, 5), torch.arange(0, 134, 2)]])
def test_head_only_draws_equal_whole_perturbed_forwards_at_the_cost_of_one(subsets: list[torch.Tensor]) -> None:
    g = torch.Generator().manual_seed(11)
    data = InMemoryDataset(torch.randn(200, 1, 28, 28, generator=g), torch.randint(0, 4, (200,), generator=g), 4)
    torch.manual_seed(0)
    ctx = Context(model=create_model("lenet", (1, 28, 28), 4), train=data, budget=Budget(0.25, 4, 200, 20))
    strategy = create_strategy("stable", sigma=0.3, samples=3, perturb="last")
    strategy.setup(ctx)
    assert strategy._head_only()
    state = strategy.generator.get_state()
    cheap = strategy._head_draws(subsets)
    assert ctx.log.forward_examples == sum(len(s) for s in subsets)  # one forward of the body, not three
    generator = torch.Generator()
    generator.set_state(state)  # the same draws, subset by subset, through whole perturbed forwards
    expected = []
    for subset in subsets:
        draws = []
        for _ in range(3):
            with perturbed(ctx.model, 0.3, target="last", generator=generator), torch.no_grad():
                draws.append(logit_gradients(ctx.model(data.inputs[subset]), data.targets[subset]))
        expected.append(torch.cat(draws, dim=1))
    torch.testing.assert_close(cheap, torch.cat(expected), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(cheap[:, :4], cheap[:, 4:8])  # the draws differ
    first = len(subsets[0])  # and the subsets' draws differ: the same point in two subsets gets other proxies
    assert not torch.allclose(cheap[0], cheap[first + len(subsets[1])])
    two_layers = create_strategy("stable", perturb="last", last_layers=2)
    two_layers.setup(ctx)
    assert not two_layers._head_only()  # then the whole forward runs per draw
