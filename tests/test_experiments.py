"""Run configurations, the SQLite store and the report, computed from stored records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from coreselect.data import load_dataset, prepare_splits
from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.report import summarise
from coreselect.report.tables import format_table


def _config(root: Path, strategy: str, seed: int, **extra) -> RunConfig:
    return RunConfig.create(dataset="npz", data_root=str(root), model="mlp", strategy=strategy, seed=seed,
                            train={"epochs": 3, "budget": 0.4, "batch_size": 32, "eval_points": 3}, **extra)


def test_config_validation_and_identity(npz_root: Path) -> None:
    full = _config(npz_root, "full", 0)
    assert full.train.budget == 1.0  # full data ignores the asked budget
    assert _config(npz_root, "random", 0).run_id == _config(npz_root, "random", 0).run_id
    assert _config(npz_root, "random", 0).run_id != _config(npz_root, "random", 1).run_id
    assert _config(npz_root, "random", 0).setting_key == _config(npz_root, "random-subset", 1).setting_key
    with pytest.raises(UnknownNameError, match="unknown model"):
        RunConfig.create(model="alexnet")
    with pytest.raises(InvalidInputError, match="val_fraction"):
        RunConfig.create(val_fraction=1.2)
    with pytest.raises(InvalidInputError, match="epochs"):
        RunConfig.create(train={"epochs": 0})


def test_store_and_report(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    for seed in (0, 1):
        for strategy in ("full", "random"):
            run_experiment(_config(npz_root, strategy, seed), store, progress_bar=False)
    noisy_config = _config(npz_root, "random-subset", 0, label_noise=0.3)
    noisy = run_experiment(noisy_config, store, progress_bar=False)

    runs = store.runs(status="done")
    assert len(runs) == 5
    rows = {r.method: r for r in summarise(runs)}
    full_acc = [r.test_accuracy for r in runs if r.config.strategy == "full"]
    rand_acc = [r.test_accuracy for r in runs if r.config.strategy == "random"]
    mean_full = sum(full_acc) / 2
    expected_rel = sum(100 * (mean_full - a) / mean_full for a in rand_acc) / 2
    assert rows["random"].relative_error_mean == pytest.approx(expected_rel)
    assert rows["random"].accuracy_mean == pytest.approx(sum(rand_acc) / 2)
    full_time = sum(r.selection_s + r.training_s for r in runs if r.config.strategy == "full") / 2
    rand_time = sum(r.selection_s + r.training_s for r in runs if r.config.strategy == "random") / 2
    assert rows["random"].speedup == pytest.approx(full_time / rand_time)
    assert rows["full"].relative_error_mean == pytest.approx(0.0, abs=1e-9) or rows["full"].seeds == 2
    # the noisy run is another setting: it has no full reference
    assert rows["random-subset"].relative_error_mean is None
    table = format_table(summarise(runs))
    assert "random-subset" in table and "—" in table

    # evaluations and selections come back as stored
    evals = store.evaluations(noisy.run_id)
    assert len(evals) == 3 and evals[-1].test_accuracy == noisy.test_accuracy
    (selection,) = store.selections(noisy.run_id)
    assert len(selection["indices"]) == round(0.4 * 600)
    splits = prepare_splits(load_dataset("npz", npz_root), label_noise=0.3, seed=0)
    expected_noisy = float(splits.train.noise_mask[selection["indices"]].float().mean())
    assert selection["noisy_share"] == pytest.approx(expected_noisy)
    assert 0.1 < expected_noisy < 0.5
    random_run = next(r for r in runs if r.config.strategy == "random")
    assert len(store.selections(random_run.run_id)) == 3  # one fresh subset per compressed epoch

    with sqlite3.connect(store.path) as db:
        stored = json.loads(db.execute("SELECT config FROM runs WHERE run_id = ?", (noisy.run_id,)).fetchone()[0])
    assert stored["label_noise"] == 0.3 and RunConfig.model_validate(stored).run_id == noisy.run_id


def test_finished_run_is_not_trained_again(npz_root: Path, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    config = _config(npz_root, "random", 0)
    first = run_experiment(config, store, progress_bar=False)
    again = run_experiment(config, store, progress_bar=False)
    assert again == first
    rerun = run_experiment(config, store, progress_bar=False, rerun=True)
    assert rerun.test_accuracy == first.test_accuracy  # same seed, same CPU: same result
    assert torch.is_tensor(store.selections(config.run_id)[0]["indices"])


def test_noisy_share_comes_from_the_stored_mask(tmp_path: Path) -> None:
    from coreselect.strategies import SelectionRound
    from coreselect.train import Timings, TrainResult

    store = ResultStore(tmp_path / "runs.db")
    config = RunConfig.create(dataset="npz", strategy="random", label_noise=0.4)
    store.begin(config)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4, 7]] = True  # examples 1, 4 and 7 carry corrupted labels
    rounds = [SelectionRound(0, torch.tensor([0, 1, 2, 3]), None),  # one of four noisy
              SelectionRound(5, torch.tensor([4, 7, 7, 9, 1]), torch.ones(5))]  # four of five (7 twice)
    result = TrainResult(0.5, 1.0, 10, 100, 0, Timings(), [], rounds)
    store.finish(config, result, noise_mask=mask)
    assert [s["noisy_share"] for s in store.selections(config.run_id)] == [pytest.approx(0.25), pytest.approx(0.8)]


def test_noisy_share_of_back_propagated_examples_for_online_strategies(npz_root: Path, tmp_path: Path) -> None:
    from coreselect.experiments.runner import load_splits
    from coreselect.report.tables import noisy_shares
    from coreselect.train import Callback
    from coreselect.train.noisy_share import NOISY_TRAINED

    class Capture(Callback):
        def __init__(self) -> None:
            self.indices: list[torch.Tensor] = []

        def on_step_end(self, trainer, batch, out) -> None:  # type: ignore[no-untyped-def]
            self.indices.append(batch.indices.cpu())

    store = ResultStore(tmp_path / "runs.db")
    config = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="train-loss",
                              label_noise=0.3, params={"selection_ratio": 0.2},
                              train={"epochs": 3, "budget": 0.2, "eval_points": 2, "batch_size": 8})
    capture = Capture()
    run = run_experiment(config, store, callbacks=[capture], progress_bar=False)
    mask = load_splits(config).train.noise_mask
    seen = torch.cat(capture.indices)
    expected = float(mask[seen].float().mean())
    assert store.evaluations(run.run_id)[-1].extras[NOISY_TRAINED] == pytest.approx(expected)
    assert noisy_shares(store, [run]) == {run.run_id: pytest.approx(expected)}
    assert 0 < expected < 1


def test_time_to_target_from_the_stored_history(tmp_path: Path) -> None:
    from coreselect.report.tables import time_to_target, time_to_target_table
    from coreselect.train import EvalRecord, Timings, TrainResult

    store = ResultStore(tmp_path / "runs.db")
    config = RunConfig.create(dataset="npz", strategy="random", train={"epochs": 4, "budget": 0.5})
    store.begin(config)
    history = [EvalRecord(step=i, examples=100 * i, test_accuracy=acc, test_loss=1.0, train_loss=1.0,
                          selection_s=0.5 * i, training_s=1.0 * i, evaluation_s=0.0)
               for i, acc in zip((1, 2, 3, 4), (0.5, 0.7, 0.9, 0.8), strict=True)]
    store.finish(config, TrainResult(0.8, 1.0, 4, 400, 0, Timings(), history, []))
    (run,) = store.runs(status="done")
    reached = time_to_target(store, run, 0.85)
    assert reached is not None and reached.epochs == pytest.approx(3.0) and reached.seconds == pytest.approx(4.5)
    assert time_to_target(store, run, 0.95) is None
    table = time_to_target_table(store, [run], [0.6, 0.95])
    assert "2.0 ep · 3.0 s (1/1)" in table and "never" in table


def test_the_run_side_never_imports_the_report_package() -> None:
    import subprocess
    import sys

    import coreselect

    root = Path(coreselect.__file__).parent
    run_side = [p for p in root.rglob("*.py") if "report" not in p.relative_to(root).parts and p.name != "cli.py"]
    assert run_side and not [p for p in run_side if "coreselect.report" in p.read_text()]
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, coreselect, coreselect.experiments.grid, coreselect.integrations.feed; "
                               "print(sorted(m for m in sys.modules if m.startswith('coreselect.report')))"],
        capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_a_setting_label_names_the_training_settings_off_their_defaults() -> None:
    from coreselect.experiments.config import setting_label

    plain = RunConfig.create(train={"epochs": 20, "budget": 0.1})
    clipped = RunConfig.create(train={"epochs": 20, "budget": 0.1, "clip_norm": 5.0, "lr": 0.05})
    assert setting_label(plain.setting_key) == "fashion-mnist · lenet · 20 epochs"
    assert setting_label(clipped.setting_key) == "fashion-mnist · lenet · 20 epochs · clip norm 5 · lr 0.05"
    assert plain.run_id != clipped.run_id and plain.setting_key != clipped.setting_key
    assert RunConfig.create(train={"epochs": 20, "budget": 0.1, "clip_norm": None}).run_id == plain.run_id
