"""The README's loop examples, extracted and run: the own loop spends exactly the budget with every strategy (the
proxy runs made by ``provide_proxy``, a holdout split for the strategies that need one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import coreselect
from coreselect.data import load_dataset
from coreselect.strategies import STRATEGIES, create_strategy
from coreselect.strategies.proxy import NeedsProxy

README = Path(__file__).resolve().parents[1] / "README.md"
HOLDOUT = [name for name in STRATEGIES if isinstance(strategy := create_strategy(name), NeedsProxy)
           and (request := strategy.proxy_request()) is not None and request.kind == "holdout"]


def _own_loop_example() -> str:
    section = README.read_text().split("## In your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_readme_own_loop_spends_exactly_the_budget(name: str, npz_root: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    code = _own_loop_example()
    assert 'create_strategy("random")' in code and 'create_model("lenet"' in code
    code = code.replace('create_strategy("random")', f'create_strategy("{name}")')
    code = code.replace('create_model("lenet", data.train.input_shape, 10)',
                        'create_model("mlp", data.train.input_shape, 4)')
    code = code.replace("epochs=20", "epochs=3").replace('"runs/proxies"', f'"{tmp_path}"')
    if name in HOLDOUT:
        assert "holdout_fraction=0.0" in code
        code = code.replace("holdout_fraction=0.0", "holdout_fraction=0.5")
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
    assert sum(spent) == budget.total_examples == round(0.1 * 3 * len(namespace["data"].train))
    assert namespace["ctx"].signals.steps_recorded == len(spent)  # the loop filled the cache every step


def test_readme_dataset_example_trains_crest_on_a_users_dataset_with_augmentation(npz_root: Path) -> None:
    section = README.read_text().split("### Any torch Dataset, with augmentation", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for old, new in [('"data/', f'"{npz_root}/'), ('create_model("resnet20"', 'create_model("mlp"'),
                     ("epochs=30", "epochs=3")]:
        assert old in code
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    result, train = namespace["result"], namespace["train"]
    assert result.examples == round(0.3 * 3 * len(train)) and train.workers == 2


def test_every_strategy_plans_its_next_gathers_as_the_readme_says() -> None:
    from coreselect.strategies import PlansBatches

    assert all(isinstance(create_strategy(name), PlansBatches) for name in STRATEGIES)
    assert "Every built-in strategy plans its next gathers" in README.read_text()


def _integration_examples() -> list[str]:
    section = README.read_text().split("### PyTorch Lightning and the Hugging Face `Trainer`", 1)[1]
    return re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)


@pytest.mark.parametrize("which", [0, 1], ids=["lightning", "huggingface"])
def test_readme_integration_examples_spend_the_budget(which: int, npz_root: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    code = _integration_examples()[which]
    small = load_dataset("npz", str(npz_root))
    monkeypatch.setattr(coreselect, "load_dataset", lambda *args, **kwargs: small)
    for old, new in [("Budget(0.3, 20,", "Budget(0.3, 3,"), ('create_model("lenet", data.train.input_shape, 10)',
                                                               'create_model("mlp", data.train.input_shape, 4)'),
                     ("image_size=28, patch_size=7", "image_size=8, patch_size=4"), ("num_labels=10", "num_labels=4"),
                     ('output_dir="runs/hf"', f'output_dir="{tmp_path}"')]:
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    feed = (namespace["selection"] if which == 0 else namespace["trainer"]).feed
    assert feed.spent == feed.budget.total_examples == round(0.3 * 3 * len(small.train))
