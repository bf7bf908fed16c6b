"""The README's own-loop example, extracted and run: it spends exactly the budget with every strategy that needs
nothing beyond the training data (no proxy run, validation split or holdout model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import coreselect
from coreselect.data import load_dataset
from coreselect.strategies import STRATEGIES, create_strategy
from coreselect.strategies.proxy import NeedsProxy

README = Path(__file__).resolve().parents[1] / "README.md"
SELF_CONTAINED = [name for name, spec in STRATEGIES.items()
                  if not isinstance(create_strategy(name), NeedsProxy) and name != "glister"]


def _own_loop_example() -> str:
    section = README.read_text().split("## In your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_readme_own_loop_spends_exactly_the_budget(name: str, npz_root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code = _own_loop_example()
    assert 'create_strategy("random")' in code and 'create_model("lenet"' in code
    code = code.replace('create_strategy("random")', f'create_strategy("{name}")')
    code = code.replace('create_model("lenet", data.train.input_shape, 10)',
                        'create_model("mlp", data.train.input_shape, 4)')
    code = code.replace("epochs=20", "epochs=3")
    small = load_dataset("npz", str(npz_root))
    monkeypatch.setattr(coreselect, "load_dataset", lambda *args, **kwargs: small)
    spent: list[int] = []
    original = coreselect.budgeted

    def counting(strategy, budget, spent_before=0):  # type: ignore[no-untyped-def]
        for batch in original(strategy, budget, spent_before):
            spent.append(len(batch))
            yield batch

    monkeypatch.setattr(coreselect, "budgeted", counting)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    budget = namespace["budget"]
    assert sum(spent) == budget.total_examples == round(0.1 * 3 * len(small.train))
    assert namespace["ctx"].signals.steps_recorded == len(spent)  # the loop filled the cache every step
