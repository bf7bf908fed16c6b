"""Judged by the clock: random's wall-clock frontier against hand-computed values, the answer table built on it
from a store, the grid option that adds the frontier runs, and the per-run forward-cost probe."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
import torch

from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.experiments.grid import FRONTIER_BUDGETS, expand, load_bench_file
from coreselect.report.frontier import (
    BELOW_FRONTIER,
    BEYOND_FRONTIER,
    FASTER_THAN_FRONTIER,
    Frontier,
    FrontierPoint,
)
from coreselect.report.tables import answer_tables, cost_floor_table, summarise
from coreselect.train import EvalRecord, Timings, TrainResult

# random at 0.1 → 10 s, 80 %; at 0.2 → 50 s, 79 % (dominated by the cheaper 0.1); at 0.3 → 100 s, 90 %; full → 1000 s
POINTS = [FrontierPoint(0.1, 10.0, 0.80), FrontierPoint(0.2, 50.0, 0.79), FrontierPoint(0.3, 100.0, 0.90),
          FrontierPoint(1.0, 1000.0, 0.95)]


def test_frontier_drops_dominated_points_and_interpolates_in_log_seconds() -> None:
    frontier = Frontier(POINTS)
    assert [p.budget for p in frontier.points] == [0.1, 0.3, 1.0]
    assert [p.budget for p in frontier.dominated] == [0.2]
    # √(10·100) s lies halfway between 10 s and 100 s in log-seconds: halfway between 80 % and 90 %
    assert frontier.accuracy_at(math.sqrt(1000)) == pytest.approx(0.85)
    assert frontier.accuracy_at(40.0) == pytest.approx(0.80 + 0.1 * math.log10(4))  # log10(40 / 10) of the way
    assert frontier.accuracy_at(100.0) == pytest.approx(0.90)
    assert frontier.accuracy_at(5000.0) == pytest.approx(0.95)  # flat past full data
    assert frontier.accuracy_at(9.0) is None  # before random's cheapest run
    # 87 % is 70 % of the way from 80 % to 90 %: 10^(1 + 0.7) s
    assert frontier.seconds_to(0.87) == pytest.approx(10 ** 1.7)
    assert frontier.seconds_to(0.925) == pytest.approx(10 ** 2.5)
    assert frontier.seconds_to(0.96) is None and frontier.seconds_to(0.7) is None


def test_verdicts_gain_and_seconds_saved_and_methods_off_the_frontiers_range() -> None:
    frontier = Frontier(POINTS)
    within = frontier.verdict(math.sqrt(1000), 0.87)
    assert within.gain == pytest.approx(0.02) and within.note == ""
    assert within.seconds_saved == pytest.approx(10 ** 1.7 - math.sqrt(1000))  # 18.50 s saved
    worse = frontier.verdict(40.0, 0.75)  # below random's cheapest accuracy, slower than it
    assert worse.gain == pytest.approx(0.75 - (0.80 + 0.1 * math.log10(4)))
    assert worse.seconds_saved is None and worse.note == BELOW_FRONTIER
    faster = frontier.verdict(5.0, 0.85)  # faster than random's cheapest run: no gain to state
    assert faster.gain is None and faster.seconds_saved == pytest.approx(10 ** 1.5 - 5.0)
    assert faster.note == FASTER_THAN_FRONTIER
    beyond = frontier.verdict(2000.0, 0.96)  # more accurate than full data, slower than it
    assert beyond.gain == pytest.approx(0.01) and beyond.seconds_saved is None and beyond.note == BEYOND_FRONTIER
    with pytest.raises(ValueError):
        Frontier([])


def test_the_gains_standard_error_is_the_spread_of_gains_over_redrawn_seeds() -> None:
    # two points 10 s and 100 s apart, std 1 and 2 points over 4 seeds each; a method at √1000 s (halfway in
    # log-seconds), std 3 points over 9 seeds
    points = [FrontierPoint(0.1, 10.0, 0.80, 0.01, seeds=4), FrontierPoint(0.3, 100.0, 0.90, 0.02, seeds=4)]
    frontier = Frontier(points)
    seconds, accuracy, method_se = math.sqrt(1000), 0.87, 0.03 / 3
    verdict = frontier.verdict(seconds, accuracy, method_se)
    assert frontier.accuracy_se_at(10.0) == pytest.approx(0.01 / 2)  # at a point: its own
    assert frontier.accuracy_se_at(500.0) == pytest.approx(0.02 / 2)  # past the last point: the last's
    assert frontier.accuracy_se_at(5.0) is None and frontier.verdict(5.0, 0.85, 0.01).gain_se is None
    # independently: redraw every seed's accuracy, rebuild the frontier from the redrawn means, take the gains' spread
    g = torch.Generator().manual_seed(0)
    draws = 4000
    cheap = 0.80 + 0.01 * torch.randn(draws, 4, generator=g, dtype=torch.float64)
    dear = 0.90 + 0.02 * torch.randn(draws, 4, generator=g, dtype=torch.float64)
    method = accuracy + 0.03 * torch.randn(draws, 9, generator=g, dtype=torch.float64)
    gains = [Frontier([FrontierPoint(0.1, 10.0, float(a)), FrontierPoint(0.3, 100.0, float(b))])
             .verdict(seconds, float(m)).gain for a, b, m in zip(cheap.mean(1), dear.mean(1), method.mean(1),
                                                                   strict=True)]
    spread = float(torch.tensor(gains, dtype=torch.float64).std())
    assert verdict.gain_se == pytest.approx(spread, rel=0.05)  # Monte Carlo: about 1 % error at 4000 draws
    assert verdict.gain == pytest.approx(0.02)


def _store_run(store: ResultStore, strategy: str, budget: float, seed: int, accuracy: float, seconds: float,
               steps: int, examples: int, forwarded: int = 0) -> None:
    config = RunConfig.create(dataset="npz", strategy=strategy, seed=seed,
                              train={"epochs": 4, "budget": budget, "batch_size": 10})
    store.begin(config)
    record = EvalRecord(step=steps, examples=examples, test_accuracy=accuracy, test_loss=1.0, train_loss=1.0,
                        selection_s=0.25 * seconds, training_s=0.75 * seconds, evaluation_s=0.0)
    store.finish(config, TrainResult(accuracy, 1.0, steps, examples, forwarded,
                                     Timings(selection=0.25 * seconds, training=0.75 * seconds), [record], [],
                                     forward_s_per_example=1e-3))


def test_answer_table_from_a_store(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "runs.db")
    for seed in (0, 1):
        _store_run(store, "random", 0.1, seed, 0.80, 10.0, 40, 400)
        _store_run(store, "random", 0.3, seed, 0.90, 100.0, 120, 1200)
        _store_run(store, "full", 1.0, seed, 0.95, 1000.0, 400, 4000)
        _store_run(store, "crest", 0.1, seed, 0.86 + 0.02 * seed, math.sqrt(1000), 40, 400, forwarded=3000)
        _store_run(store, "train-loss", 0.1, seed, 0.82, 20.0, 30, 400, forwarded=4000)  # 30 steps: 25 % off
    rows = summarise(store.runs(status="done"))
    (answer,) = answer_tables(rows)
    lines = {line.split("|")[1].strip(): line for line in answer.table.splitlines()[2:]}
    assert list(lines)[:2] == ["full", "random"]  # sorted by accuracy
    crest = [c.strip() for c in lines["crest"].split("|")]
    # 87 % where random reaches 85 %; ± the standard error of crest's mean, 1.41 / √2 (random's seeds agree)
    assert "adaptive" in crest and "87.00 ± 1.41" in crest and "+2.00 ± 1.00" in crest
    assert f"+{10 ** 1.7 - math.sqrt(1000):.1f} s" in crest
    assert "40" in crest and "2.6×" in crest  # selection 7.91 s over 3000 forwards × 1 ms
    train_loss = [c.strip() for c in lines["train-loss"].split("|")]
    assert "30 ⚠" in train_loss and "online" in train_loss
    # 20 s: random reaches 80 + 10·log10(2) % ≈ 83.01 %; every seed alike, so no standard error
    assert f"{100 * (0.82 - 0.80 - 0.1 * math.log10(2)):+.2f}" in train_loss
    # constant columns (seeds, 2 everywhere) go to the caption
    assert "seeds 2" in answer.caption and "| seeds" not in answer.table
    html = answer_tables(rows, "html")[0].table
    assert 'class="family family-online"' in html and html.count("<tr>") == 1 + 5  # header and five rows
    floor = cost_floor_table(rows)
    assert floor is not None and "3000" in floor and "3.00" in floor  # 3000 × 1 ms


def test_frontier_grid_option_adds_random_budgets_and_full(npz_root: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(f"""
[[grids]]
frontier = true
datasets = ["npz"]
data_root = "{npz_root}"
models = ["mlp"]
strategies = ["random", "crest"]
budgets = [0.1]
seeds = [0, 1]
""")
    runs = expand(load_bench_file(grid))
    random_budgets = sorted({r.config.train.budget for r in runs if r.config.strategy == "random"})
    assert random_budgets == sorted(FRONTIER_BUDGETS)
    assert len(runs) == 2 * (1 + len(FRONTIER_BUDGETS) + 1)  # per seed: crest, random × 5 (0.1 shared), full
    assert sum(r.config.strategy == "full" for r in runs) == 2


def test_every_run_measures_its_forward_cost_without_touching_the_random_stream(npz_root: Path,
                                                                                tmp_path: Path) -> None:
    from coreselect.data import load_dataset
    from coreselect.models import create_model
    from coreselect.train.forward_cost import forward_seconds_per_example

    data = load_dataset("npz", str(npz_root))
    model = create_model("mlp", data.train.input_shape, data.train.num_classes)
    model.train()
    state, weights = torch.get_rng_state(), [p.clone() for p in model.parameters()]
    cost = forward_seconds_per_example(model, data.train)
    assert 0 < cost < 1e-2
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))

    store = ResultStore(tmp_path / "runs.db")
    config = RunConfig.create(dataset="npz", data_root=str(npz_root), model="mlp", strategy="train-loss",
                              train={"epochs": 2, "budget": 0.2, "batch_size": 8, "eval_points": 1})
    run = run_experiment(config, store, progress_bar=False)
    assert run.forward_s_per_example is not None and run.forward_s_per_example > 0
    assert run.forward_floor_s == pytest.approx(run.selection_forward_examples * run.forward_s_per_example)


def test_a_store_of_the_first_schema_gains_the_new_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the version-1 runs table, without forward_s_per_example
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at TEXT NOT NULL, "
                   "finished_at TEXT, config TEXT NOT NULL, setting_key TEXT NOT NULL, dataset TEXT NOT NULL, "
                   "model TEXT NOT NULL, strategy TEXT NOT NULL, method TEXT NOT NULL, budget REAL NOT NULL, "
                   "epochs INTEGER NOT NULL, seed INTEGER NOT NULL, label_noise REAL NOT NULL, test_accuracy REAL, "
                   "test_loss REAL, steps INTEGER, examples INTEGER, selection_forward_examples INTEGER, "
                   "selection_s REAL, training_s REAL, evaluation_s REAL, message TEXT)")
        config = RunConfig.create(dataset="npz")
        db.execute("INSERT INTO runs (run_id, status, created_at, config, setting_key, dataset, model, strategy, "
                   "method, budget, epochs, seed, label_noise, test_accuracy) VALUES (?, 'done', 'now', ?, ?, 'npz', "
                   "'lenet', 'random', 'random', 1.0, 20, 0, 0.0, 0.5)",
                   (config.run_id, config.model_dump_json(), config.setting_key))
        db.execute("PRAGMA user_version = 1")
    (run,) = ResultStore(path).runs()
    assert run.test_accuracy == 0.5 and run.forward_s_per_example is None and run.forward_floor_s is None
