# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need
# (Debian's Fashion-MNIST package, a virtualenv, the package itself) and are quick when already set up.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium
JOBS ?= 2

.PHONY: demo test lint bench bench-crest bench-noise bench-online bench-static bench-clock bench-data bench-distributed setup dataset browser

setup: dataset $(STAMP)

dataset: $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist

browser: $(CHROMIUM)  # the report-page test renders the page in headless Chromium

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,lightning,huggingface]'
	touch $(STAMP)

demo: setup  # every strategy once on Fashion-MNIST, then the report in runs/demo_report/
	$(BIN)/coreselect bench --preset demo --jobs $(JOBS)

test: setup browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q --durations=15

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/lenet_fashion_mnist.py
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/facility_location.py
	$(BIN)/python benchmarks/crest_check.py
	$(BIN)/python benchmarks/peak_memory.py
	$(BIN)/python benchmarks/trajectory_cost.py
	$(BIN)/python benchmarks/distributed_selection.py

bench-crest: setup  # CREST's Table 1 protocol with random's frontier, 3 seeds (about 1 h 30 on one core)
	$(BIN)/coreselect bench --preset crest-table

bench-noise: setup  # the label-noise table (about 40 min on 2 cores)
	$(BIN)/python benchmarks/label_noise.py

bench-online: setup  # the online-selection time-to-target table (about 1 h 30 on 2 cores)
	$(BIN)/python benchmarks/online_selection.py

bench-static: setup  # the static-coreset size sweep and transfer table (about 1 h on 2 cores)
	$(BIN)/python benchmarks/static_coresets.py

bench-clock: setup  # InfoBatch, CREST, stable and online selection against random's frontier, budgets 0.1-0.5, clean and 30% noise, 3 seeds (about 65 min on 2 cores)
	$(BIN)/python benchmarks/clock_goals.py

bench-data: setup  # the DataLoader path against in-memory tensors, and 4 GiB of .npy trained in bounded memory (about 1 h on 2 cores)
	$(BIN)/python benchmarks/streamed_data.py
	$(BIN)/python benchmarks/larger_than_memory.py

bench-distributed: setup  # selection wall-clock, 1 vs 2 processes (gloo), 8 strategies (about 10 min on 2 cores)
	$(BIN)/python benchmarks/distributed_selection.py
