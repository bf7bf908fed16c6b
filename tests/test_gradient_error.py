"""The gradient-error diagnostic against per-example autograd."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.report import report
from coreselect.strategies import create_strategy
from coreselect.train import GradientError, TrainConfig, Trainer, mean_gradient


def _data() -> InMemoryDataset:
    x, y = make_blobs(200, seed=6)
    return InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), 4)


def test_mean_gradient_matches_per_example_autograd() -> None:
    torch.manual_seed(0)
    model, data = create_model("mlp", (1, 8, 8), 4), _data()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x[None],)), y[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))(params, data.inputs, data.targets)
    flat = torch.cat([per_example[k].flatten(1) for k in params], dim=1)  # 200 × P
    indices, weights = torch.arange(0, 200, 3), torch.rand(67) * 2
    torch.testing.assert_close(mean_gradient(model, data, indices, weights, batch_size=16),
                               (flat[indices] * weights[:, None]).mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mean_gradient(model, data, torch.arange(200)), flat.mean(0), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("name", "zero"), [("full", True), ("random-subset", False), ("craig", False)])
def test_callback_records_errors(name: str, zero: bool) -> None:
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, budget=0.5, batch_size=20, eval_points=2)
    trainer = Trainer(create_model("mlp", (1, 8, 8), 4), create_strategy(name), _data(), _data(), config,
                      callbacks=[GradientError()], progress_bar=False)
    result = trainer.fit()
    errors = [r.extras["gradient_error"] for r in result.history]
    assert len(errors) == 2
    if zero:
        assert errors == [0.0, 0.0]
    else:
        assert all(e > 0 for e in errors)
        last = result.selections[-1]
        full = mean_gradient(trainer.model, trainer.train_data, torch.arange(200))
        chosen = mean_gradient(trainer.model, trainer.train_data, last.indices, last.weights)
        assert errors[-1] == pytest.approx(float((full - chosen).norm()), rel=1e-5)


def test_report_shows_gradient_error(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    config = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="random",
                              train={"epochs": 2, "budget": 0.5, "batch_size": 32, "eval_points": 2})
    run = run_experiment(config, store, progress_bar=False, gradient_error_sample=100)
    evals = store.evaluations(run.run_id)
    assert all(e.extras["gradient_error_relative"] > 0 for e in evals)
    assert "grad. error" in report(store)
