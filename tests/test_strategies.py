"""The registry and the baseline strategies, including exact resumption of their batch streams."""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import assert_resumes_exact_stream
from coreselect.data import InMemoryDataset
from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.strategies import STRATEGIES, Batch, Budget, Context, create_strategy


def _context(n: int = 100, fraction: float = 0.3, batch_size: int = 8, seed: int = 0) -> Context:
    data = InMemoryDataset(torch.randn(n, 2), torch.arange(n) % 3, 3)
    return Context(model=torch.nn.Linear(2, 3), train=data, budget=Budget(fraction, 5, n, batch_size), seed=seed)


def _epochs(strategy, ctx: Context, passes: int, size: int) -> list[list[int]]:
    """Indices of ``passes`` consecutive passes of ``size`` examples each."""
    stream = strategy.batches()
    out = []
    for _ in range(passes):
        seen: list[int] = []
        while len(seen) < size:
            seen += next(stream).indices.tolist()
        assert len(seen) == size  # a pass ends exactly at its last (possibly short) batch
        out.append(seen)
    return out


def test_registry_lists_and_validates() -> None:
    assert {"full", "random", "random-subset"} <= set(STRATEGIES)
    with pytest.raises(UnknownNameError, match=r"valid names: .*random-subset"):
        create_strategy("craig-typo")
    with pytest.raises(InvalidInputError, match=r"bad parameters for strategy 'random-subset'.*valid fields: none"):
        create_strategy("random-subset", select_every=2)
    with pytest.raises(InvalidInputError, match=r"bad parameters for strategy 'random'.*valid fields: whole_passes"):
        create_strategy("random", select_every=2)


def test_full_visits_every_example_once_per_pass_in_new_orders() -> None:
    ctx = _context()
    strategy = create_strategy("full")
    strategy.setup(ctx)
    passes = _epochs(strategy, ctx, 3, 100)
    assert all(sorted(p) == list(range(100)) for p in passes)
    assert passes[0] != passes[1]


def test_random_draws_a_fresh_subset_of_budget_size_each_pass() -> None:
    ctx = _context()
    strategy = create_strategy("random")
    strategy.setup(ctx)
    passes = _epochs(strategy, ctx, 3, 30)
    assert all(len(set(p)) == 30 for p in passes)
    assert len({frozenset(p) for p in passes}) == 3
    assert [r.indices.sort().values.tolist() for r in ctx.log.rounds] == [sorted(p) for p in passes]


def _counts(strategy, examples: int) -> torch.Tensor:
    """How often each training index comes up in the stream's first ``examples`` examples."""
    seen: list[int] = []
    for batch in strategy.batches():
        seen += batch.indices.tolist()
        if len(seen) >= examples:
            return torch.bincount(torch.tensor(seen[:examples]), minlength=100)
    raise AssertionError("unreachable")


def test_random_in_whole_passes_trains_every_example_equally_often() -> None:
    ctx = _context(fraction=0.3)  # 5 compressed epochs of 30: 150 examples, 1.5 passes over the 100
    passes = create_strategy("random", whole_passes=True)
    passes.setup(ctx)
    counts = _counts(passes, ctx.budget.total_examples)
    assert set(counts.tolist()) == {1, 2} and int((counts == 2).sum()) == 50
    assert len(ctx.log.rounds) == 1 and sorted(ctx.log.rounds[0].indices.tolist()) == list(range(100))
    fresh = create_strategy("random")  # Binomial(5, 0.3) times each: some examples never, some 3 times or more
    fresh.setup(_context(fraction=0.3))
    counts = _counts(fresh, ctx.budget.total_examples)
    assert counts.sum() == 150 and (counts == 0).any() and (counts >= 3).any()


def test_random_subset_keeps_one_subset() -> None:
    ctx = _context()
    strategy = create_strategy("random-subset")
    strategy.setup(ctx)
    passes = _epochs(strategy, ctx, 3, 30)
    assert len({frozenset(p) for p in passes}) == 1 and passes[0] != passes[1]
    assert len(ctx.log.rounds) == 1


def test_seed_changes_the_stream() -> None:
    streams = []
    for seed in (0, 0, 1):
        strategy = create_strategy("random")
        strategy.setup(_context(seed=seed))
        streams.append([b.indices.tolist() for b in itertools.islice(strategy.batches(), 6)])
    assert streams[0] == streams[1] != streams[2]


@pytest.mark.parametrize("name", ["full", "random", "random-subset"])
def test_state_dict_resumes_the_exact_stream(name: str) -> None:
    assert_resumes_exact_stream(name, _context, skip=7, take=20)  # stops mid-pass


def test_random_in_whole_passes_resumes_the_exact_stream() -> None:
    assert_resumes_exact_stream("random", _context, skip=15, take=20, whole_passes=True)  # across a pass's end


def test_batch_head_and_budget() -> None:
    batch = Batch(torch.arange(5), torch.ones(5))
    assert batch.head(3).indices.tolist() == [0, 1, 2] and len(batch.head(3).weights) == 3
    assert batch.head(9) is batch
    budget = Budget(0.1, 20, 60000, 128)
    assert (budget.total_examples, budget.total_steps, budget.epoch_examples) == (120000, 938, 6000)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match=r"budget must lie in \(0, 1\]"):
            Budget(bad, 20, 100, 10)


@pytest.mark.parametrize(("name", "params", "needle"), [
    ("craig", {"select_every": True}, "select_every.*valid integer"),  # a bool is not a count
    ("crest", {"check_thresh": float("inf")}, "check_thresh.*finite"),
    ("crest", {"check_interval": 1.5}, "check_interval.*valid integer"),
    ("infobatch", {"budgeted": 1}, "budgeted.*valid boolean"),
])
def test_strategy_parameters_are_strictly_typed_and_finite(name: str, params: dict, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        create_strategy(name, **params)
    assert create_strategy("crest", check_thresh=1).params.check_thresh == 1.0  # an int is a number


def test_a_shuffled_pass_says_ahead_what_its_takes_return() -> None:
    from coreselect.strategies.passes import ShuffledPass

    for whole in (False, True):
        shuffled = ShuffledPass()
        shuffled.shuffle(23, torch.Generator().manual_seed(0))
        assert sorted(shuffled.order.tolist()) == list(range(23))
        shuffled.take(4)
        planned = shuffled.ahead(5, whole=whole)
        taken = [shuffled.take(5) for _ in range(len(planned))]
        assert [p.tolist() for p in planned] == [t.tolist() for t in taken]
        assert shuffled.remaining == (4 if whole else 0)  # 19 left: three whole takes of 5, then a short one
        restored = ShuffledPass()
        restored.load_state_dict(shuffled.state_dict())
        assert restored.remaining == shuffled.remaining and torch.equal(restored.order, shuffled.order)


def test_a_shuffled_pass_leads_with_given_positions_and_keeps_the_rest_in_order() -> None:
    from coreselect.strategies.passes import ShuffledPass

    shuffled = ShuffledPass()
    shuffled.shuffle(12, torch.Generator().manual_seed(1))
    taken = shuffled.take(3).tolist()
    rest = shuffled.order[3:].tolist()
    lead = [p for p in rest if p % 2 == 0][:2][::-1]  # two untaken positions, in an order of our choosing
    shuffled.lead_with(torch.tensor(lead))
    assert shuffled.order[:3].tolist() == taken  # what was taken stays taken
    assert shuffled.take(2).tolist() == lead
    assert shuffled.take(100).tolist() == [p for p in rest if p not in lead]
