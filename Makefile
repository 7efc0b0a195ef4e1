# lat: set up, test, run the main job. `make setup` creates .venv with CPU torch;
# override TORCH (e.g. TORCH="torch --index-url ...cu124") on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup test test-slow demo bench clean

setup: $(BIN)/lat

$(BIN)/lat: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip check
	touch $(BIN)/lat

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
