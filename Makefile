# lat: set up, test, run the main job. `make setup` creates .venv with CPU torch;
# override TORCH (e.g. TORCH="torch --index-url ...cu124") on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup test test-slow lint lock demo bench clean

setup: $(BIN)/lat

$(BIN)/lat: setup.cfg pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e ".[dev]"
	$(BIN)/pip check
	touch $(BIN)/lat

# ruff (lint, import order, format check) and mypy over the package; CI runs it before the tests.
lint: setup
	$(BIN)/ruff check lat tests experiments
	$(BIN)/ruff format --check lat tests experiments
	$(BIN)/mypy

# Re-pin requirements.lock to what the venv holds now (after a deliberate upgrade).
lock: setup
	{ head -n 2 requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -v '^torch=='; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

demo: setup
	$(BIN)/lat run experiment=quickstart

bench: setup
	$(BIN)/python experiments/benchmarks/preview_throughput.py

clean:
	rm -rf $(VENV) runs wandb lightning_logs *.egg-info
