"""Any map-style torch Dataset: read on demand (main process or DataLoader workers), it gives every strategy the
run the in-memory tensors give; augmentation reaches training steps only; bad items get one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from coreselect.data import DataSplits, InMemoryDataset, StreamedDataset
from coreselect.errors import InvalidInputError
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.report.tables import answers, summarise_store
from coreselect.strategies import STRATEGIES, Budget, Context, StepOutput, create_strategy
from coreselect.train import TrainConfig, Trainer
from coreselect.train.augment import crop_flip
from coreselect.train.precision import PRECISION, resolve_precision
from coreselect.train.proxies import provide_proxy


def _config(name: str, npz_root: Path, workers: int | None, **train: object) -> RunConfig:
    return RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy=name, val_fraction=0.1,
                            holdout_fraction=0.3, label_noise=0.2, workers=workers,
                            train={"epochs": 4, "budget": 0.3, "batch_size": 16, "eval_points": 2,
                                   "optimizer": "adamw", "lr": 1e-3, **train})


def _same_run(a: ResultStore, b: ResultStore, run_id: str) -> None:
    first, second = a.get(run_id), b.get(run_id)
    assert first is not None and second is not None
    assert (first.test_accuracy, first.steps, first.examples, first.selection_forward_examples) == (
        second.test_accuracy, second.steps, second.examples, second.selection_forward_examples)
    assert [e.test_loss for e in a.evaluations(run_id)] == [e.test_loss for e in b.evaluations(run_id)]
    picked = [(s["indices"].tolist(), None if s["weights"] is None else s["weights"].tolist())
              for s in a.selections(run_id)]
    assert picked == [(s["indices"].tolist(), None if s["weights"] is None else s["weights"].tolist())
                      for s in b.selections(run_id)]


def test_every_strategy_selects_on_a_streamed_dataset_what_it_selects_in_memory(npz_root: Path,
                                                                                 tmp_path: Path) -> None:
    memory = ResultStore(tmp_path / "memory.db")
    streamed = {workers: ResultStore(tmp_path / f"streamed-{workers}.db") for workers in (0, 2)}
    for name in STRATEGIES:
        config = _config(name, npz_root, None)
        run_experiment(config, memory, progress_bar=False)
        for workers, store in streamed.items():  # read in this process, and through DataLoader workers
            assert _config(name, npz_root, workers).run_id == config.run_id  # not part of the run's identity
            run_experiment(_config(name, npz_root, workers), store, progress_bar=False)
            _same_run(memory, store, config.run_id)


@pytest.mark.parametrize("name", ["crest", "rho-loss", "random", "train-loss"])
def test_dataloader_workers_give_the_same_run(npz_root: Path, tmp_path: Path, name: str) -> None:
    memory, workers = ResultStore(tmp_path / "memory.db"), ResultStore(tmp_path / "workers.db")
    config = _config(name, npz_root, None, augment="crop-flip")
    run_experiment(config, memory, progress_bar=False)
    run_experiment(_config(name, npz_root, 2, augment="crop-flip"), workers, progress_bar=False)
    _same_run(memory, workers, config.run_id)


class _Images(Dataset):
    """A user's dataset: numpy images and plain int labels, with a broken item where asked."""

    def __init__(self, n: int = 96, bad: int | None = None, bad_kind: str = "shape") -> None:
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
        self.y = rng.integers(0, 3, n)
        self.bad, self.bad_kind = bad, bad_kind

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, object]:
        if i == self.bad and self.bad_kind == "shape":
            return self.x[i][:, :4], int(self.y[i])
        if i == self.bad and self.bad_kind == "label":
            return self.x[i], 0.5
        return self.x[i], int(self.y[i])


def test_a_users_dataset_trains_every_family_with_the_budget_spent() -> None:
    train, test = StreamedDataset.wrap(_Images(), num_classes=3), StreamedDataset.wrap(_Images(48), num_classes=3)
    config = TrainConfig(epochs=3, budget=0.5, batch_size=8, eval_points=1, optimizer="adamw", lr=1e-3)
    for name in ["random", "crest", "train-loss", "infobatch"]:
        model = create_model("mlp", train.input_shape, 3)
        result = Trainer(model, create_strategy(name), train, test, config, progress_bar=False).fit()
        assert result.examples == round(0.5 * 3 * len(train))


@pytest.mark.parametrize(("kind", "message"), [("shape", "one input shape"), ("label", "integer class indices")])
def test_a_dataset_with_a_bad_item_gets_a_one_line_error(kind: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        train = StreamedDataset.wrap(_Images(bad=5, bad_kind=kind), num_classes=3)
        train[torch.arange(10)]
    assert "\n" not in str(caught.value)


class _Recorder(nn.Module):
    """An MLP that records every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.net(x)


@pytest.mark.parametrize("name", ["crest", "train-loss", "gradmatch"])
def test_augmentation_reaches_training_steps_and_never_selection_forwards(name: str) -> None:
    images = _Images(120)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    originals = {row.numpy().tobytes() for row in data.inputs}
    augmented: list[Tensor] = []

    def recorded_crop_flip(x: Tensor, generator: torch.Generator) -> Tensor:
        augmented.append(out := crop_flip(x, generator))
        return out

    model = _Recorder()
    config = TrainConfig(epochs=3, budget=0.3, batch_size=8, eval_points=1, optimizer="adamw", lr=1e-3)
    result = Trainer(model, create_strategy(name), data, data, config, progress_bar=False,
                     augment=recorded_crop_flip).fit()
    assert len(augmented) == result.steps
    steps = [x for x in model.seen if any(x.shape == a.shape and torch.equal(x, a) for a in augmented)]
    assert len(steps) == result.steps  # every step trained on its augmented batch
    others = [x for x in model.seen if not any(x.shape == a.shape and torch.equal(x, a) for a in augmented)]
    assert len(others) > 0 and all(row.numpy().tobytes() in originals for x in others for row in x)
    shifted = sum(row.numpy().tobytes() not in originals for x in steps for row in x)
    assert shifted > 0.8 * result.examples  # 1 in 162 crop-flips is the identity


def test_crop_flip_equals_pad_crop_and_mirror_of_each_image() -> None:
    x = torch.randn(6, 2, 5, 7)
    out = crop_flip(x, torch.Generator().manual_seed(3), padding=2)
    g = torch.Generator().manual_seed(3)  # the same draws, applied image by image
    dy, dx = torch.randint(0, 5, (2, 6), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        expected = padded[i, :, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7]
        expected = expected.flip(-1) if flip[i] else expected
        assert torch.equal(out[i], expected)


def test_an_augmented_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    from test_trainer import _Interrupt, _trainer

    expected = _trainer("random", augment="crop-flip").fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer("random", checkpoint=tmp_path / "run.pt", callbacks=[_Interrupt(2)], augment="crop-flip").fit()
    resumed = _trainer("random", checkpoint=tmp_path / "run.pt", augment="crop-flip").fit()
    assert resumed.resumed_from_step is not None
    assert [r.test_loss for r in resumed.history] == [r.test_loss for r in expected.history]
    assert expected.history[-1].test_loss != _trainer("random").fit().history[-1].test_loss  # augmentation acted


def _native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """Make this CPU report AVX512-BF16 (``native``) or neither it nor AMX."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_bf16_computes_training_and_selection_forwards_in_bf16_and_evaluates_in_fp32(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _native_bf16(monkeypatch, True)  # no warning's extra forwards: the test counts them
    images = _Images(120)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    model = create_model("mlp", data.input_shape, 3)
    dtypes: list[tuple[bool, torch.dtype]] = []  # (autograd on, dtype of the last layer's output)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    last.register_forward_hook(lambda _m, _i, out: dtypes.append((torch.is_grad_enabled(), out.dtype)))
    config = TrainConfig(epochs=3, budget=0.3, batch_size=8, eval_points=2, optimizer="adamw", lr=1e-3,
                         precision="bf16")
    trainer = Trainer(model, create_strategy("train-loss"), data, data, config, progress_bar=False)
    result = trainer.fit()
    assert all(np.isfinite(r.test_loss) for r in result.history)
    evaluations = 2 * -(-len(data) // config.eval_batch_size)  # the last forwards of each evaluation
    assert {d for grad, d in dtypes if grad} == {torch.bfloat16}  # training steps
    probe = -(-min(1024, len(data)) // config.eval_batch_size) * 4  # the cost-floor probe, before training
    assert {d for _, d in dtypes[:probe]} == {torch.bfloat16}  # in the precision selection forwards run in
    selection = [d for grad, d in dtypes[probe:] if not grad]
    assert torch.bfloat16 in selection and selection.count(torch.float32) == evaluations


def _recorded_dtypes(model: nn.Module) -> list[tuple[bool, torch.dtype]]:
    """(autograd on, dtype of the last linear layer's output) of each forward of ``model`` from now on."""
    dtypes: list[tuple[bool, torch.dtype]] = []
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    last.register_forward_hook(lambda _m, _i, out: dtypes.append((torch.is_grad_enabled(), out.dtype)))
    return dtypes


def test_bf16_selection_alone_leaves_training_and_evaluation_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    _native_bf16(monkeypatch, True)  # no warning's extra forwards: the test counts them
    images = _Images(120)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    model = create_model("mlp", data.input_shape, 3)
    dtypes = _recorded_dtypes(model)
    config = TrainConfig(epochs=3, budget=0.3, batch_size=8, eval_points=2, optimizer="adamw", lr=1e-3,
                         selection_precision="bf16")
    Trainer(model, create_strategy("train-loss"), data, data, config, progress_bar=False).fit()
    probe = -(-min(1024, len(data)) // config.eval_batch_size) * 4
    assert {d for _, d in dtypes[:probe]} == {torch.bfloat16}  # the cost floor of bf16 selection forwards
    assert {d for grad, d in dtypes if grad} == {torch.float32}  # training steps
    no_grad = [d for grad, d in dtypes[probe:] if not grad]
    evaluations = 2 * -(-len(data) // config.eval_batch_size)
    assert no_grad.count(torch.float32) == evaluations and no_grad.count(torch.bfloat16) == len(no_grad) - evaluations
    assert "selection_precision" not in RunConfig.create().setting_key  # runs made before it keep their identity
    assert RunConfig.create(train={"selection_precision": "bf16"}).setting_key != RunConfig.create().setting_key


def test_selection_arithmetic_stays_fp32_outside_bf16_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    _native_bf16(monkeypatch, True)  # no warning's extra forwards: the test counts them
    import coreselect.strategies.stable as stable

    seen: list[tuple[bool, torch.dtype]] = []  # (autocast on, dtype of the proxies) at each facility location

    def spy(proxies: Tensor, *args: object, **kwargs: object) -> tuple[Tensor, Tensor]:
        seen.append((torch.is_autocast_enabled("cpu"), proxies.dtype))
        return minibatch_coresets(proxies, *args, **kwargs)

    minibatch_coresets = stable.minibatch_coresets
    monkeypatch.setattr(stable, "minibatch_coresets", spy)
    images = _Images(160)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    model = create_model("mlp", data.input_shape, 3)
    dtypes = _recorded_dtypes(model)
    config = TrainConfig(epochs=2, budget=0.5, batch_size=8, eval_points=1, selection_precision="bf16")
    strategy = create_strategy("stable", perturb="all", random_subset_size=0.1)
    Trainer(model, strategy, data, data, config, progress_bar=False).fit()
    assert seen and set(seen) == {(False, torch.float32)}
    probe = -(-min(1024, len(data)) // config.eval_batch_size) * 4
    assert torch.bfloat16 in {d for grad, d in dtypes[probe:] if not grad}  # the posterior draws' forwards


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_runs_selection_forwards_and_the_holdout_model_in_bf16_only_where_it_is_native(
        monkeypatch: pytest.MonkeyPatch, npz_root: Path, tmp_path: Path, native: bool, expected: torch.dtype) -> None:
    _native_bf16(monkeypatch, native)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    images = _Images(120)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    model = create_model("mlp", data.input_shape, 3)
    dtypes = _recorded_dtypes(model)
    config = TrainConfig(epochs=3, budget=0.3, batch_size=8, eval_points=2, selection_precision="auto")
    Trainer(model, create_strategy("train-loss"), data, data, config, progress_bar=False).fit()
    assert {d for grad, d in dtypes if grad} == {torch.float32}  # training steps
    evaluations = 2 * -(-len(data) // config.eval_batch_size)
    no_grad = [d for grad, d in dtypes if not grad]
    assert no_grad.count(expected) == len(no_grad) - (evaluations if native else 0) and len(no_grad) > evaluations

    made: list[list[tuple[bool, torch.dtype]]] = []  # the holdout model's training forwards

    def make_model() -> nn.Module:
        holdout_model = create_model("mlp", data.input_shape, 3)
        made.append(_recorded_dtypes(holdout_model))
        return holdout_model

    splits = DataSplits("images", train=data.subset(torch.arange(60)), test=data,
                        holdout=data.subset(torch.arange(60, 120)))
    provide_proxy(create_strategy("rho-loss"), splits, make_model, folder=tmp_path / "proxy", config=config)
    assert made and {d for recorded in made for grad, d in recorded if grad} == {expected}

    store = ResultStore(tmp_path / "runs.db")
    run = run_experiment(RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="train-loss",
                                          train={"epochs": 1, "budget": 0.3, "batch_size": 32, "eval_points": 1,
                                                 "selection_precision": "auto"}), store, progress_bar=False)
    assert store.record(run.run_id, PRECISION) == {"training": "fp32", "selection": "bf16" if native else "fp32"}
    ran = f"auto precision ran as training fp32 · selection {'bf16' if native else 'fp32'}"
    assert ran in answers(summarise_store(store))  # the report says what auto became, from the store


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_is_bf16_on_a_gpu_from_ampere_on(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                              expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert resolve_precision("auto", "cuda:0") == expected
    assert resolve_precision("auto", "meta") == "fp32"  # no other device is taken to compute bf16


@pytest.mark.parametrize("native", [True, False])
def test_bf16_by_name_on_a_device_that_emulates_it_warns_with_both_speeds(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool) -> None:
    _native_bf16(monkeypatch, native)
    images = _Images(40)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    config = TrainConfig(epochs=1, budget=0.5, batch_size=8, eval_points=1, selection_precision="bf16")
    with caplog.at_level("WARNING", logger="coreselect"):
        Trainer(create_model("mlp", data.input_shape, 3), create_strategy("random"), data, data, config,
                progress_bar=False).fit()
    warned = [r.getMessage() for r in caplog.records if "without native bf16" in r.getMessage()]
    if native:
        assert not warned
    else:
        (message,) = warned
        assert message.startswith("selection_precision bf16") and "µs an example in bf16" in message
        assert "set it to auto" in message


@pytest.mark.parametrize(("selection_precision", "expected"), [(None, torch.float32), ("bf16", torch.bfloat16)])
def test_a_holdout_model_trains_in_the_precision_of_selection(tmp_path: Path, selection_precision: str | None,
                                                             expected: torch.dtype) -> None:
    images = _Images(96)
    whole = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), num_classes=3)
    part = whole.subset(torch.arange(48))
    splits = DataSplits("images", train=part, test=part, holdout=whole.subset(torch.arange(48, 96)))
    made: list[list[tuple[bool, torch.dtype]]] = []

    def make_model() -> nn.Module:
        model = create_model("mlp", whole.input_shape, 3)
        made.append(_recorded_dtypes(model))
        return model

    config = TrainConfig(epochs=2, batch_size=8, eval_points=1, selection_precision=selection_precision)
    provide_proxy(create_strategy("rho-loss"), splits, make_model, folder=tmp_path, config=config)
    assert made and {d for dtypes in made for grad, d in dtypes if grad} == {expected}


def test_workers_read_a_planned_pass_ahead_and_a_selection_gather_in_between_drops_it() -> None:
    images = _Images(64)
    data = StreamedDataset.of(InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), 3), workers=2)
    plan = [torch.arange(8), torch.arange(8, 16), torch.tensor([40, 3, 17])]
    data.read_ahead(plan)
    assert data.expects(plan[0]) and not data.expects(plan[1])
    assert torch.equal(data[plan[0]][0], torch.from_numpy(images.x[:8]))
    other = torch.tensor([5, 60])  # a selection gather: read at once, and the rest of the plan dropped
    assert torch.equal(data[other][0], torch.from_numpy(images.x[[5, 60]]))
    assert not data.expects(plan[1])
    assert torch.equal(data[plan[1]][0], torch.from_numpy(images.x[8:16]))
    view = data.subset(torch.tensor([10, 20, 30]))  # a view shares the workers: its gathers drop the plan too
    data.read_ahead(plan[1:])  # the batch just gathered is kept: the workers do not read it again
    assert data.expects(plan[2])
    assert torch.equal(view[torch.tensor([2, 0])][0], torch.from_numpy(images.x[[30, 10]]))
    assert not data.expects(plan[2])


def _image_folder(root: Path) -> Path:
    """Two classes of 16×16 colour images, 40 training and 12 test images each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 12)):
        for c, cls in enumerate(("dark", "light")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 120, (16, 16, 3)) + 120 * c
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("name", ["crest", "train-loss"])
def test_an_image_folder_decoded_when_read_gives_the_run_it_gives_in_memory(tmp_path: Path, name: str) -> None:
    root = _image_folder(tmp_path / "images")
    stores = [ResultStore(tmp_path / f"{w}.db") for w in ("memory", "workers")]
    for store, workers in zip(stores, (None, 2), strict=True):
        config = RunConfig.create(dataset="imagefolder", data_root=str(root), model="cnn", strategy=name,
                                  workers=workers, train={"epochs": 2, "budget": 0.5, "batch_size": 8,
                                                          "eval_points": 2, "augment": "crop-flip"})
        run_experiment(config, store, progress_bar=False)
    _same_run(*stores, config.run_id)


def test_the_cli_trains_an_image_folder_read_by_workers_with_augmentation_in_bf16_clipped(tmp_path: Path) -> None:
    import subprocess
    import sys

    _image_folder(tmp_path)
    command = [sys.executable, "-m", "coreselect", "train", "--dataset", "imagefolder", "--data-root", str(tmp_path),
               "--augment", "crop-flip", "--workers", "2", "--precision", "bf16", "--strategy", "crest",
               "--budget", "0.3", "--epochs", "1", "--model", "cnn", "--batch-size", "8", "--eval-points", "1",
               "--clip-norm", "5", "--store", str(tmp_path / "runs.db"), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = ResultStore(tmp_path / "runs.db").runs()[0]
    assert run.status == "done" and run.examples == round(0.3 * 80)
    assert run.config.train.augment == "crop-flip" and run.config.train.precision == "bf16"
    assert run.config.workers == 2 and run.config.train.clip_norm == 5.0


def test_forwards_are_kept_within_their_bytes_and_a_request_within_one_or_the_last_gather_reads_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from coreselect.data import streamed

    images = _Images(64)
    data = StreamedDataset.of(InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), 3))
    monkeypatch.setattr(streamed, "RECENT_BYTES", 20 * images.x[0].nbytes)  # twenty images of forwards
    subsets = torch.tensor([9, 40, 3, 17, 22, 5, 61, 30, 12, 0, 33, 48])
    forwarded = torch.cat(list(data.chunks(5, subsets)))  # a selection forward, in chunks
    list(data.chunks(4, torch.arange(50, 58)))  # eight more: twenty kept
    data[torch.tensor([1, 2])]  # a gather: kept as the last one, beside the forwards
    with monkeypatch.context() as reads:
        reads.setattr(StreamedDataset, "_load", lambda *_: pytest.fail("read again"))
        assert torch.equal(data[subsets[[7, 2]]][0], torch.from_numpy(images.x[[30, 3]]))  # training within it
        assert torch.equal(torch.cat(list(data.chunks(4, subsets))), forwarded)  # a check on the same points
        assert torch.equal(data[torch.tensor([2, 1])][0], torch.from_numpy(images.x[[2, 1]]))
        assert data.holds(torch.tensor([52, 57]))
    list(data.chunks(3, torch.tensor([60, 62])))  # over twenty: the least recently used forward goes
    assert data.holds(subsets[:3]) and data.holds(torch.tensor([62])) and not data.holds(torch.tensor([52]))
    list(data.chunks(8, torch.arange(21)))  # larger than all that is kept: read, not kept, nothing dropped
    assert not data.holds(torch.tensor([20])) and data.holds(subsets)
    data[torch.tensor([4, 6])]  # a gather replaces the last one only
    assert not data.holds(torch.tensor([1])) and data.holds(subsets) and data.holds(torch.tensor([6, 4]))
    assert not data.holds(torch.tensor([9, 62]))  # rows of two requests: read again


def test_a_gather_within_the_last_one_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _Images(64)
    data = StreamedDataset.of(InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), 3))
    candidates = torch.tensor([9, 40, 3, 17, 22, 5])
    data[candidates]
    view = data.subset(torch.arange(64).flip(0))  # another view of the same rows shares what was read
    monkeypatch.setattr(StreamedDataset, "_load", lambda *_: pytest.fail("read again"))
    assert data.holds(torch.tensor([17, 9])) and not data.holds(torch.tensor([17, 8]))
    assert torch.equal(data[torch.tensor([17, 9])][0], torch.from_numpy(images.x[[17, 9]]))
    assert torch.equal(view[torch.tensor([63 - 40])][0], torch.from_numpy(images.x[[40]]))


@pytest.mark.parametrize(("name", "params"), [("train-loss", {}), ("crest", {}), ("random", {}),
                                            ("train-loss", {"selection_ratio": 0.5, "reuse_within": 1000,
                                                            "unseen": "first"})])
def test_planned_batches_are_the_gathers_the_strategy_makes_next(name: str, params: dict) -> None:
    images = _Images(200)
    data = InMemoryDataset(torch.from_numpy(images.x), torch.from_numpy(images.y), 3)
    strategy = create_strategy(name, **params)
    planned_pass = bool(params)  # its choices made when the pass began: the trainer gathers each batch itself
    strategy.setup(Context(model=create_model("mlp", (1, 8, 8), 3), train=data, budget=Budget(0.5, 4, 200, 8)))
    gathered: list[Tensor] = []
    original = InMemoryDataset.__getitem__
    stream = strategy.batches()
    batch = next(stream)
    plan = strategy.planned()
    assert plan
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InMemoryDataset, "__getitem__", lambda self, idx: (gathered.append(torch.as_tensor(idx)),
                                                                          original(self, idx))[1])
        for _ in range(min(3, len(plan))):
            out = StepOutput(0, torch.zeros(len(batch), 3), torch.ones(len(batch)))
            strategy.observe(batch, out)
            batch = next(stream)
            if name != "train-loss" or planned_pass:
                gathered.append(batch.indices)  # the trainer gathers the batch itself
    assert [g.tolist() for g in gathered[: len(plan)]] == [p.tolist() for p in plan[: len(gathered)]]
