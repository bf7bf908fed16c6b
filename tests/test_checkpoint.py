"""Verified checkpoints: a damaged one is set aside and said in one line, the run resumes from the previous
one (to the very result of an uninterrupted run) or starts over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from coreselect.train.checkpoint import load_checkpoint, previous_path, remove_checkpoint, save_checkpoint
from test_trainer import _Interrupt, _trainer


def _zeros_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 256] = bytes(256)
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _emptied(path: Path) -> None:
    path.write_bytes(b"")


def _random_bytes(path: Path) -> None:
    path.write_bytes(torch.randint(0, 256, (path.stat().st_size,), dtype=torch.uint8).numpy().tobytes())


DAMAGE: dict[str, Callable[[Path], None]] = {
    "zeros": _zeros_in_the_middle, "truncated": _truncated, "empty": _emptied, "random": _random_bytes}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_set_aside_for_the_previous_one(tmp_path: Path, damage: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"step": 1, "w": torch.arange(4096.0)})
    save_checkpoint(path, {"step": 2, "w": torch.arange(4096.0) * 2})
    assert load_checkpoint(path)["step"] == 2 and previous_path(path).is_file()
    DAMAGE[damage](path)
    with caplog.at_level(logging.WARNING, logger="coreselect"):
        state = load_checkpoint(path)
    assert state is not None and state["step"] == 1 and torch.equal(state["w"], torch.arange(4096.0))
    assert (tmp_path / "run.pt.corrupt").is_file() and not path.exists()
    assert len(caplog.records) == 1 and "resuming from the previous checkpoint" in caplog.records[0].getMessage()


def test_with_no_good_checkpoint_the_run_starts_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    _truncated(path)
    _random_bytes(previous_path(path))
    with caplog.at_level(logging.WARNING, logger="coreselect"):
        assert load_checkpoint(path) is None
    assert "the run starts over" in caplog.records[-1].getMessage()
    assert load_checkpoint(path) is None  # both set aside: nothing left to trip on
    remove_checkpoint(path)
    assert not any(p.name.startswith("run.pt") and not p.name.endswith(".corrupt") for p in tmp_path.iterdir())


def test_resuming_past_a_damaged_checkpoint_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    expected = _trainer("random").fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer("random", checkpoint=checkpoint, callbacks=[_Interrupt(3)]).fit()
    latest_step = load_checkpoint(checkpoint)["progress"]["step"]
    _zeros_in_the_middle(checkpoint)  # zeros over part of the weights: loadable, silently wrong, unless verified
    resumed = _trainer("random", checkpoint=checkpoint).fit()
    assert resumed.resumed_from_step is not None and resumed.resumed_from_step < latest_step
    assert [r.test_accuracy for r in resumed.history] == [r.test_accuracy for r in expected.history]
    assert [r.test_loss for r in resumed.history] == [r.test_loss for r in expected.history]


def test_a_run_resumes_with_the_thread_count_it_started_with(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = _trainer("random").fit()
        checkpoint = tmp_path / "run.pt"
        with pytest.raises(KeyboardInterrupt):
            _trainer("random", checkpoint=checkpoint, callbacks=[_Interrupt(2)]).fit()
        torch.set_num_threads(1)  # e.g. resumed by `bench --jobs 2` on two cores
        with caplog.at_level(logging.WARNING, logger="coreselect"):
            resumed = _trainer("random", checkpoint=checkpoint).fit()
        assert torch.get_num_threads() == 2
        assert any("resuming with the 2 CPU threads" in r.getMessage() for r in caplog.records)
        assert [r.test_loss for r in resumed.history] == [r.test_loss for r in expected.history]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("damaged", ["scores.pt", "record.json"])
def test_a_damaged_proxy_cache_is_remade(npz_root: Path, tmp_path: Path, damaged: str) -> None:
    from test_cli import _train_args, cli

    def forgetting(store: Path, budget: str) -> list[str]:
        return _train_args(npz_root, store, "--strategy", "forgetting", "--budget", budget)

    reference = cli(*forgetting(tmp_path / "reference.db", "0.5"))
    assert reference.returncode == 0, reference.stderr
    store = tmp_path / "runs.db"
    assert cli(*forgetting(store, "0.2")).returncode == 0
    (cache,) = Path(f"{store}.proxies").iterdir()
    _truncated(cache / damaged)
    again = cli(*forgetting(store, "0.5"))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "is damaged" in again.stderr and "remaking it" in again.stderr
    from coreselect.experiments import ResultStore

    (expected,) = ResultStore(tmp_path / "reference.db").runs()
    assert [r.test_accuracy for r in ResultStore(store).runs() if r.config.train.budget == 0.5] == [
        expected.test_accuracy]
