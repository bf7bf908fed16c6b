# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need
# (Debian's Fashion-MNIST package, a virtualenv, the package itself) and are quick when already set up.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_STORE := runs/demo.db
DEMO_ARGS := --dataset fashion-mnist --model lenet --epochs 20 --val-fraction 0.1 --store $(DEMO_STORE)
DEMO_METHODS := random random-subset craig gradmatch glister crest stable
SEEDS ?= 0

.PHONY: demo test lint bench bench-noise bench-static setup dataset clean

setup: dataset $(STAMP)

dataset: $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	for seed in $(SEEDS); do \
	  $(BIN)/coreselect train $(DEMO_ARGS) --strategy full --seed $$seed || exit 1; \
	  for method in $(DEMO_METHODS); do \
	    $(BIN)/coreselect train $(DEMO_ARGS) --strategy $$method --budget 0.1 --seed $$seed || exit 1; \
	  done; \
	done
	$(BIN)/coreselect report --store $(DEMO_STORE)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/lenet_fashion_mnist.py
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/facility_location.py
	$(BIN)/python benchmarks/crest_check.py
	$(BIN)/python benchmarks/peak_memory.py
	$(BIN)/python benchmarks/trajectory_cost.py

bench-noise: setup  # the label-noise table (about 40 min on 2 cores)
	$(BIN)/python benchmarks/label_noise.py

bench-static: setup  # the static-coreset size sweep and transfer table (about 40 min on 2 cores)
	$(BIN)/python benchmarks/static_coresets.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
