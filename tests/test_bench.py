"""The benchmark harness: grid files and presets expand to the runs they declare, bad files get clear
errors, a killed ``coreselect bench`` finishes only the missing runs, and the report page renders in
headless Chromium with every plot and table present."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.experiments import ResultStore, RunConfig
from coreselect.experiments.grid import expand, load_bench_file, load_preset, narrowed, preset_names, run_grid
from coreselect.report.page import write_report
from test_cli import assert_one_line_error, cli


def _grid_file(path: Path, root: Path, *, strategies: str, seeds: str = "[0, 1]", budgets: str = "[0.2, 0.5]",
               extra: str = "", epochs: int = 3) -> Path:
    path.write_text(f"""
description = "a small grid"
[[grids]]
datasets = ["npz"]
data_root = "{root}"
models = ["mlp"]
strategies = {strategies}
budgets = {budgets}
seeds = {seeds}
train = {{ epochs = {epochs}, batch_size = 32, eval_points = 3 }}
{extra}
""")
    return path


def test_grid_expands_to_the_cross_product_with_one_full_run_per_setting(npz_root: Path, tmp_path: Path) -> None:
    spec = load_bench_file(_grid_file(tmp_path / "grid.toml", npz_root,
                                      strategies='["full", "random", {name = "crest", params = {check_thresh = 0.3}}]',
                                      extra="label_noise = [0.0, 0.2]"))
    runs = expand(spec)
    # per noise level and seed: one full run (budget forced to 1) + 2 budgets × 2 strategies
    assert len(runs) == 2 * 2 * (1 + 2 * 2)
    assert len({r.config.run_id for r in runs}) == len(runs)
    assert sum(r.config.strategy == "full" for r in runs) == 4
    crest = [r.config for r in runs if r.config.strategy == "crest"]
    assert all(c.params == {"check_thresh": 0.3} for c in crest)
    assert {(c.label_noise, c.seed, c.train.budget) for c in crest} == {
        (n, s, b) for n in (0.0, 0.2) for s in (0, 1) for b in (0.2, 0.5)}
    same = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="random", seed=1,
                            label_noise=0.2, train={"epochs": 3, "batch_size": 32, "eval_points": 3, "budget": 0.5})
    assert same.run_id in {r.config.run_id for r in runs}  # the same identity as `coreselect train` would give
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text(json.dumps(spec.model_dump(mode="json")))  # JSON is YAML
    assert [r.config.run_id for r in expand(load_bench_file(yaml_file))] == [r.config.run_id for r in runs]


def test_bad_grid_files_get_clear_errors(npz_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="budgetz"):
        load_bench_file(_grid_file(tmp_path / "a.toml", npz_root, strategies='["random"]', extra="budgetz = [1]"))
    with pytest.raises(UnknownNameError, match=r"valid names: .*random-subset"):
        expand(load_bench_file(_grid_file(tmp_path / "b.toml", npz_root, strategies='["randon"]')))
    with pytest.raises(InvalidInputError, match="budget"):
        expand(load_bench_file(_grid_file(tmp_path / "c.toml", npz_root, strategies='["random"]', budgets="[1.5]")))
    (tmp_path / "d.toml").write_text("grids = [")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_bench_file(tmp_path / "d.toml")
    with pytest.raises(InvalidInputError, match="--preset"):
        load_bench_file(tmp_path / "missing.toml")
    with pytest.raises(UnknownNameError, match="crest-table"):
        load_preset("crest")
    assert_one_line_error(cli("bench", "--preset", "nope"), "unknown preset", "sizes")
    assert_one_line_error(cli("bench"), "--preset NAME or --config FILE")


def test_a_benchmark_narrowed_to_some_grids_and_seeds_plans_just_their_runs(npz_root: Path, tmp_path: Path) -> None:
    second_grid = f"""
[[grids]]
datasets = ["npz"]
data_root = "{npz_root}"
models = ["mlp"]
strategies = ["uniform"]
label_noise = [0.2]
budgets = [0.3]
seeds = [0, 1]
frontier = true
train = {{ epochs = 3, batch_size = 32, eval_points = 3 }}
"""
    grid = _grid_file(tmp_path / "two.toml", npz_root, strategies='["random"]', extra=second_grid)
    spec = load_bench_file(grid)
    first = expand(spec.model_copy(update={"grids": spec.grids[:1]}))
    second = expand(spec.model_copy(update={"grids": spec.grids[1:]}))
    assert {r.config.run_id for r in expand(narrowed(spec, grids=[2]))} == {r.config.run_id for r in second}
    assert {r.config.run_id for r in expand(narrowed(spec, grids=[2, 1]))} == {r.config.run_id for r in expand(spec)}
    assert {r.config.seed for r in expand(narrowed(spec, grids=[2], seeds=[5]))} == {5}
    assert {r.config.strategy for r in second} == {"uniform", "random", "full"}  # its own frontier comes along
    assert not {r.config.run_id for r in first} & {r.config.run_id for r in second}
    with pytest.raises(InvalidInputError, match=r"grid 3 is not in this benchmark.*from 1 to 2"):
        narrowed(spec, grids=[1, 3])
    listed = cli("bench", "--config", str(grid), "--store", str(tmp_path / "runs.db"), "--grid", "2", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("to do") == len(second)


def test_presets_are_valid_and_demo_runs_every_strategy() -> None:
    from coreselect.strategies import STRATEGIES

    assert set(preset_names()) >= {"demo", "crest-table", "noise", "online", "sizes"}
    for name in preset_names():
        assert expand(load_preset(name)), name
    demo = {r.config.strategy for r in expand(load_preset("demo"))}
    assert demo == set(STRATEGIES)
    assert {r.config.seed for r in expand(load_preset("crest-table"))} == {0, 1, 2}


def test_parallel_jobs_give_the_same_runs(npz_root: Path, tmp_path: Path) -> None:
    spec = load_bench_file(_grid_file(tmp_path / "g.toml", npz_root, strategies='["full", "random", "forgetting"]',
                                      seeds="[0]", extra="val_fraction = 0.2"))
    runs = expand(spec)
    serial, parallel = ResultStore(tmp_path / "serial.db"), ResultStore(tmp_path / "parallel.db")
    assert all(o.error is None for o in run_grid(runs, serial, jobs=1))
    outcomes = run_grid(runs, parallel, jobs=2)
    assert all(o.error is None and not o.skipped for o in outcomes)
    # two forgetting runs (two budgets) share one proxy, made once while the other waited for it
    assert len(list((tmp_path / "parallel.db.proxies").iterdir())) == 1
    for run in runs:
        a, b = serial.get(run.config.run_id), parallel.get(run.config.run_id)
        assert a is not None and b is not None and a.status == b.status == "done"
        assert a.test_accuracy == pytest.approx(b.test_accuracy, abs=1e-6)
        assert [s["indices"].tolist() for s in serial.selections(a.run_id)] == [
            s["indices"].tolist() for s in parallel.selections(b.run_id)]
    assert all(o.skipped for o in run_grid(runs, parallel, jobs=2))


def test_killed_bench_finishes_only_the_missing_runs(npz_root: Path, tmp_path: Path) -> None:
    grid = _grid_file(tmp_path / "grid.toml", npz_root, strategies='["full", "random", "random-subset"]',
                      seeds="[0, 1, 2]")
    store_path = tmp_path / "bench.db"
    command = [sys.executable, "-m", "coreselect", "bench", "--config", str(grid), "--store", str(store_path),
               "--out", str(tmp_path / "report")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    store = ResultStore(store_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if store_path.is_file() and len(store.runs(status="done")) >= 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the benchmark ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = {r.run_id: r for r in store.runs(status="done")}
    total = len(expand(load_bench_file(grid)))
    assert 3 <= len(finished_before) < total
    again = cli("bench", "--config", str(grid), "--store", str(store_path), "--out", str(tmp_path / "report"))
    assert again.returncode == 0, again.stderr
    assert f"{total - len(finished_before)} runs made, {len(finished_before)} already in" in again.stdout
    after = {r.run_id: r for r in store.runs(status="done")}
    assert len(after) == total
    for run_id, run in finished_before.items():  # not trained again: same stored results
        assert after[run_id].training_s == run.training_s and after[run_id].test_accuracy == run.test_accuracy
    assert (tmp_path / "report" / "report.html").is_file()


def _live_processes_of_session(session: int) -> list[int]:
    """Processes (zombies aside) whose session is ``session``: a benchmark started in its own session and
    every worker it spawned."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _, _, sid = stat[stat.rindex(")") + 2:].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(int(entry.name))
    return found


def _contents(store: ResultStore) -> dict[str, tuple]:
    return {r.run_id: (r.status, r.test_accuracy, r.steps, r.examples,
                       [e.test_accuracy for e in store.evaluations(r.run_id)],
                       [s["indices"].tolist() for s in store.selections(r.run_id)]) for r in store.runs()}


@pytest.fixture(scope="module")
def stop_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ResultStore]:
    """A small grid and its store made uninterrupted (two jobs), shared by the stop tests."""
    from conftest import make_blobs

    folder = tmp_path_factory.mktemp("stop")
    x, y = make_blobs(800, seed=1)
    np.savez(folder / "train.npz", x=x[:600], y=y[:600], classes=np.array(["a", "b", "c", "d"]))
    np.savez(folder / "test.npz", x=x[600:], y=y[600:])
    # runs long enough (a few tenths of a second each) that the stop tests find one mid-run with its checkpoint
    grid = _grid_file(folder / "grid.toml", folder, strategies='["random", "random-subset"]', seeds="[0, 1]",
                      epochs=15)
    reference = ResultStore(folder / "reference.db")
    assert all(o.error is None for o in run_grid(expand(load_bench_file(grid)), reference, jobs=2))
    return grid, reference


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_stopped_bench_leaves_no_process_and_resumes_to_the_same_store(stop_grid: tuple[Path, ResultStore],
                                                                      tmp_path: Path, stop: signal.Signals) -> None:
    grid, reference = stop_grid
    store_path = tmp_path / "bench.db"
    args = ["bench", "--config", str(grid), "--store", str(store_path), "--jobs", "2", "--out", str(tmp_path / "r")]
    # as from a terminal: Ctrl-C at its default even when this test runs where SIGINT is ignored (a background job)
    process = subprocess.Popen([sys.executable, "-m", "coreselect", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if store_path.is_file() and ResultStore(store_path).runs(status="done"):
            break
        time.sleep(0.1)
    assert process.poll() is None, "the benchmark ended before it could be stopped"
    if stop == signal.SIGINT:  # Ctrl-C: the terminal signals the whole process group
        os.killpg(process.pid, signal.SIGINT)
    else:  # kill -9 of the benchmark process alone
        process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    time.sleep(5)
    assert _live_processes_of_session(process.pid) == []
    partial = ResultStore(store_path)
    assert 0 < len(partial.runs(status="done")) < len(reference.runs())
    if stop == signal.SIGINT:
        assert process.returncode == 130 and "re-run the same command to resume" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        assert {r.status for r in partial.runs()} <= {"done", "interrupted"}
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert _contents(partial) == _contents(reference)


def test_bench_meeting_a_damaged_checkpoint_resumes_and_writes_its_report(
        stop_grid: tuple[Path, ResultStore], tmp_path: Path) -> None:
    grid, reference = stop_grid
    store_path = tmp_path / "bench.db"
    args = ["bench", "--config", str(grid), "--store", str(store_path), "--jobs", "2", "--out", str(tmp_path / "r")]
    process = subprocess.Popen([sys.executable, "-m", "coreselect", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    checkpoints = Path(f"{store_path}.checkpoints")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if any(checkpoints.glob("*.pt")):
            os.killpg(process.pid, signal.SIGSTOP)  # freeze the benchmark and its workers where they are
            if any(checkpoints.glob("*.pt")):
                break
            os.killpg(process.pid, signal.SIGCONT)  # a run ended in between and removed its checkpoint
        time.sleep(0.005)
    assert process.poll() is None, "the benchmark ended before it could be stopped"
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 of the benchmark and its workers, mid-run
    process.communicate(timeout=60)
    damaged = list(checkpoints.glob("*.pt*"))
    assert damaged
    for path in damaged:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = cli(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "does not match its checksum" in again.stderr or "no checksum header" in again.stderr
    assert (tmp_path / "r" / "report.html").is_file()
    assert _contents(ResultStore(store_path)) == _contents(reference)


def test_a_fixed_thread_count_gives_train_and_bench_the_same_result(npz_root: Path, tmp_path: Path) -> None:
    grid = _grid_file(tmp_path / "grid.toml", npz_root, strategies='["random"]', seeds="[0]", budgets="[0.5]",
                      extra="threads = 1")
    bench = cli("bench", "--config", str(grid), "--store", str(tmp_path / "bench.db"), "--jobs", "2")
    assert bench.returncode == 0, bench.stderr
    (planned,) = [r for r in expand(load_bench_file(grid)) if r.config.strategy == "random"
                  and r.config.train.budget == 0.5]
    train = cli("train", "--dataset", "npz", "--data-root", str(npz_root), "--model", "mlp", "--strategy", "random",
                "--budget", "0.5", "--epochs", "3", "--batch-size", "32", "--eval-points", "3", "--threads", "1",
                "--store", str(tmp_path / "train.db"), "--no-progress")
    assert train.returncode == 0, train.stderr
    (alone,) = ResultStore(tmp_path / "train.db").runs()
    in_bench = ResultStore(tmp_path / "bench.db").get(planned.config.run_id)
    assert alone.run_id == planned.config.run_id and alone.config.threads == 1
    assert in_bench is not None and alone.test_accuracy == in_bench.test_accuracy


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Appended to a copy of the page: records whether every image decoded, then the test reads the DOM.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute("data-images", images.length + "/" + broken);
  const right = s => Math.ceil(document.querySelector(s).getBoundingClientRect().right);
  document.body.setAttribute("data-layout", [window.innerWidth, document.documentElement.scrollWidth,
    right(".answer table"), right("img.report-plot")].join("/"));  // the first plot: the frontier
});
</script></body>"""


def _render(page: Path) -> tuple[str, str]:
    """The DOM Chromium built from ``page`` after loading it, and its log (console messages included)."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr",
         "--v=0", "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (make test installs it)")
def test_report_page_renders_in_headless_chromium(npz_root: Path, tmp_path: Path) -> None:
    grid = _grid_file(tmp_path / "grid.toml", npz_root, strategies='["full", "random", "craig"]', seeds="[0, 1]",
                      extra="label_noise = [0.2]")
    store = ResultStore(tmp_path / "runs.db")
    run_grid(expand(load_bench_file(grid)), store)
    written = write_report(store, tmp_path / "report", targets=[0.5, 0.9])
    page = written[1].read_text()
    expected_plots = ["frontier", "accuracy_vs_time", "accuracy_vs_examples", "relative_error", "speedup",
                      "selection_share", "noisy_share", "class_balance"]
    for name in expected_plots:
        assert (tmp_path / "report" / f"{name}.png").is_file()
    checked = tmp_path / "report" / "checked.html"
    checked.write_text(page.replace("</body>", IMAGE_CHECK))
    dom, log = _render(checked)
    assert _console_errors(log) == [], _console_errors(log)
    titles = ["Which method here?", "Against random's wall-clock frontier", "Comparison", "Cost floor",
              "Accuracy against wall-clock", "Accuracy against back-propagated examples",
              "Relative error against full data", "Speed-up including selection cost", "Selection time share",
              "Noisy labels among the selected", "Class balance of the selections", "Time to target"]
    for title in titles:
        assert f"<h2>{title}</h2>" in dom, title
    assert dom.count('class="report-plot"') == len(expected_plots)
    assert f'data-images="{len(expected_plots)}/0"' in dom  # every plot decoded, none broken
    assert dom.count("<table") >= 2 and "random" in dom and "craig" in dom
    assert dom.index("Which method here?") < dom.index("Against random") < dom.index("<h2>Comparison")  # answer first
    # at 1400 px the answer table and the frontier plot fit: nothing scrolls sideways
    width, scroll_width, table_right, plot_right = map(int, dom.split('data-layout="')[1].split('"')[0].split("/"))
    assert width == 1400 and scroll_width <= width and table_right <= width and plot_right <= width
    assert dom.index('class="report-plot"') > dom.index("<h2>Against random")
    # the checks can fail: a broken image and a script error are caught
    broken = tmp_path / "report" / "broken.html"
    broken.write_text(page.replace("base64,", "base64,AAAA", 1).replace(
        "</body>", "<script>undefinedFunction();</script>" + IMAGE_CHECK))
    dom, log = _render(broken)
    assert f'data-images="{len(expected_plots)}/1"' in dom
    assert _console_errors(log), log[-2000:]
