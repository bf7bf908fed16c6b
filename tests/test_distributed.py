"""Selection under DDP: two ``gloo`` CPU processes against one, for every strategy.

The jobs run ``tests/ddp_job.py`` (every registered strategy through ``run_experiment``) on 2 000 real
Fashion-MNIST training images, once as one plain process and once under ``torchrun`` with two. Training to the
same accuracy is checked on one strategy of each kind of batch a step can take (uniform, weighted coreset,
adaptive coreset, rescaled losses, online picks against a holdout model, a static proxy's scores): the step's
all-reduce is the same code for all of them, and every strategy's selection is compared exactly.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from coreselect import distributed
from coreselect.data.catalog import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR
from coreselect.data.formats import load_idx_pair
from coreselect.strategies import STRATEGIES

JOB = Path(__file__).with_name("ddp_job.py")
TRAINED = ["full", "random", "craig", "crest", "stable", "infobatch", "rho-loss", "bayesian", "el2n"]


def _job(nproc: int, data_root: Path, store: Path, out: Path, *extra: str,
         expect_failure: bool = False) -> dict[str, dict[str, Any]]:
    command = [sys.executable, str(JOB)] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(JOB)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same kernels in both jobs: one thread per process
    done = subprocess.run([*command, "--data-root", str(data_root), "--store", str(store), "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=900)
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line]
    if expect_failure:
        assert done.returncode != 0 and "crash at step" in done.stderr
        return {}
    assert done.returncode == 0, "\n".join(errors[-20:]) or done.stderr[-4000:]
    return torch.load(out, weights_only=False)


def _fashion_subset(folder: Path) -> Path:
    """The first 2 000 training and 1 000 test images of Fashion-MNIST, as an npz dataset folder."""
    folder.mkdir(parents=True)
    (x_train, y_train), (x_test, y_test) = (load_idx_pair(FASHION_MNIST_DIR, part) for part in ("train", "t10k"))
    np.savez(folder / "train.npz", x=x_train[:2000], y=y_train[:2000], classes=np.array(FASHION_MNIST_CLASSES))
    np.savez(folder / "test.npz", x=x_test[:1000], y=y_test[:1000])
    return folder


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    """Results of: the frozen-weights job on 1 and 2 processes (the 2-process one reads the proxy runs the
    1-process one made, so static strategies score from the same record), and training jobs of the ``TRAINED``
    strategies on 1 process (seeds 0 and 1) and 2 processes (seed 0, making its own proxy runs data-parallel).
    The 1-process jobs run two at a time (one thread each); the 2-process ones alone."""
    root = tmp_path_factory.mktemp("ddp")
    data = _fashion_subset(root / "data")

    def one_process(name: str, *extra: str) -> dict[str, dict[str, Any]]:
        return _job(1, data, root / name / "runs.db", root / f"{name}.pt", *extra)

    trained = ("--strategies", *TRAINED)
    with ThreadPoolExecutor(max_workers=2) as pool:
        frozen = pool.submit(one_process, "frozen-1", "--frozen")
        seeds = [pool.submit(one_process, f"train-1-seed{seed}", "--seed", str(seed), *trained) for seed in (0, 1)]
        results = {"frozen-1": frozen.result(), **{f"train-1-seed{s}": f.result() for s, f in enumerate(seeds)}}
    shutil.copytree(root / "frozen-1" / "runs.db.proxies", root / "frozen-2" / "runs.db.proxies")
    results["frozen-2"] = _job(2, data, root / "frozen-2" / "runs.db", root / "frozen-2.pt", "--frozen")
    results["train-2-seed0"] = _job(2, data, root / "train-2" / "runs.db", root / "train-2-0.pt", *trained)
    return results


def _same_weights(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def test_every_strategy_selects_the_same_batches_on_two_processes(jobs: dict) -> None:
    one, two = jobs["frozen-1"], jobs["frozen-2"]
    assert set(one) == set(two) == set(STRATEGIES)
    for name in STRATEGIES:
        a, b = one[name]["batches"], two[name]["batches"]
        assert len(a) == len(b) > 0, name
        for step, ((ia, wa), (ib, wb)) in enumerate(zip(a, b, strict=True)):
            assert torch.equal(ia, ib), f"{name}: batch {step} differs"
            assert _same_weights(wa, wb), f"{name}: weights of batch {step} differ"
        sa, sb = one[name]["selections"], two[name]["selections"]
        assert len(sa) == len(sb), name
        for ra, rb in zip(sa, sb, strict=True):
            assert ra["step"] == rb["step"] and torch.equal(ra["indices"], rb["indices"]), name
            assert _same_weights(ra["weights"], rb["weights"]), name


def test_frozen_batches_are_not_trivially_equal(jobs: dict) -> None:
    """The comparison above can fail: two strategies (or two seeds of one) do draw different batches."""
    one = jobs["frozen-1"]
    assert not torch.equal(one["craig"]["batches"][0][0], one["random"]["batches"][0][0])
    assert not torch.equal(one["rho-loss"]["batches"][0][0], one["uniform"]["batches"][0][0])


def test_two_processes_train_to_the_accuracy_of_one(jobs: dict) -> None:
    """Final test accuracy with 2 processes is within the run-to-run noise of one process: the largest gap
    may not exceed three times the root-mean-square gap between two seeds over the trained strategies."""
    one, other_seed, two = jobs["train-1-seed0"], jobs["train-1-seed1"], jobs["train-2-seed0"]
    assert set(one) == set(other_seed) == set(two) == set(TRAINED)
    seed_gaps = [one[n]["accuracy"] - other_seed[n]["accuracy"] for n in TRAINED]
    noise = math.sqrt(sum(g * g for g in seed_gaps) / len(seed_gaps))
    assert noise > 0
    for name in TRAINED:
        gap = abs(two[name]["accuracy"] - one[name]["accuracy"])
        assert gap <= 3 * noise, f"{name}: 2 processes {two[name]['accuracy']:.4f} vs 1 {one[name]['accuracy']:.4f}"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL with two processes needs two GPUs")
def test_two_nccl_processes_select_what_one_gpu_process_selects(tmp_path: Path) -> None:
    data = _fashion_subset(tmp_path / "data")
    one = _job(1, data, tmp_path / "one" / "runs.db", tmp_path / "one.pt", "--frozen", "--device", "cuda")
    shutil.copytree(tmp_path / "one" / "runs.db.proxies", tmp_path / "two" / "runs.db.proxies")
    two = _job(2, data, tmp_path / "two" / "runs.db", tmp_path / "two.pt", "--frozen", "--device", "cuda")
    for name in STRATEGIES:
        for step, ((ia, wa), (ib, wb)) in enumerate(zip(one[name]["batches"], two[name]["batches"], strict=True)):
            assert torch.equal(ia, ib) and _same_weights(wa, wb), f"{name}: batch {step} differs on GPU"


def test_interrupted_two_process_job_resumes_exactly(tmp_path: Path) -> None:
    """A 2-process job stopped after its third checkpoint and started again ends exactly where an
    uninterrupted one does: same final accuracy, same batches after the resume point."""
    data = _fashion_subset(tmp_path / "data")
    picked = ["crest", "bayesian", "ltc"]  # stateful: region and loss windows; KFAC factors; trajectories
    common = ("--strategies", *picked, "--eval-points", "6")
    whole = _job(2, data, tmp_path / "whole" / "runs.db", tmp_path / "whole.pt", *common)
    for name in picked:  # the crash ends the job: one job per strategy
        _job(2, data, tmp_path / "cut" / "runs.db", tmp_path / "cut.pt", "--strategies", name, "--eval-points", "6",
             "--crash-at-step", "25", expect_failure=True)
    resumed = _job(2, data, tmp_path / "cut" / "runs.db", tmp_path / "resumed.pt", *common)
    for name in picked:
        assert resumed[name]["accuracy"] == whole[name]["accuracy"], name
        tail = resumed[name]["batches"]
        assert 0 < len(tail) < len(whole[name]["batches"]), name  # it did resume, not start again
        for (ia, wa), (ib, wb) in zip(whole[name]["batches"][-len(tail):], tail, strict=True):
            assert torch.equal(ia, ib) and _same_weights(wa, wb), name


def test_train_nproc_2_runs_one_job_and_reports_once(tmp_path: Path) -> None:
    data = _fashion_subset(tmp_path / "data")
    store = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, "-m", "coreselect", "train", "--dataset", "npz", "--data-root", str(data), "--model", "mlp",
         "--strategy", "craig", "--budget", "0.2", "--epochs", "2", "--eval-points", "2", "--store", str(store),
         "--no-progress", "--nproc", "2"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 reports; the other rank is silent
    from coreselect.experiments import ResultStore

    (run,) = ResultStore(store).runs(status="done")
    assert len(ResultStore(store).evaluations(run.run_id)) == 2  # evaluations once per job, not per rank
    assert not (tmp_path / "runs.db.checkpoints" / f"{run.run_id}.pt").exists()


def test_nproc_below_one_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "coreselect", "train", "--nproc", "0", "--store",
                           str(tmp_path / "r.db")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--nproc must be a positive number" in done.stderr


def test_world_of_one_is_the_identity() -> None:
    group = distributed.World()
    rows = torch.arange(12.0).view(6, 2)
    assert group.gather_parts(rows, 6) is rows
    assert group.share_work(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]
    assert group.broadcast("anything") == "anything"


def test_parts_cover_the_rows_in_rank_order() -> None:
    worlds = [distributed.World(rank, 3) for rank in range(3)]
    assert [w.bounds(10) for w in worlds] == [(0, 4), (4, 7), (7, 10)]
    assert worlds[0].part_sizes(2) == [1, 1, 0]


def test_nproc_is_dropped_from_the_workers_arguments() -> None:
    from coreselect.cli import _without_nproc

    assert _without_nproc(["train", "--nproc", "2", "--seed", "1", "--nproc=3"]) == ["train", "--seed", "1"]
