# Developer entry points: `make demo` runs kaito on the embedded simulated cluster, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps test lint typecheck unit demo demo-tuning demo-scale bench clean

install: $(STAMP)

# Two distributions from one tree: kaito (the operator and its pods) and kaito-sim (the local cluster, sim/).
$(STAMP): pyproject.toml sim/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,inference]' -e './sim[demo]'
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# Debian packages the tests run for real (docker-registry, prometheus); installed with apt-get when missing.
system-deps:
	@scripts/system-deps

unit: install system-deps
	$(BIN)/pytest

test: lint typecheck unit

# The demo's model travels through a local docker-registry when one can be installed without a prompt;
# otherwise the demo says so and hands its model over directly.
demo: install
	@SYSTEM_DEPS_NO_PROMPT=1 scripts/system-deps docker-registry || true
	$(BIN)/kaito demo

# The tuning loop on CPU: fetch-data, tune, push-adapter to a local docker-registry, pull-adapter, serve.
demo-tuning: install system-deps
	$(BIN)/kaito demo-tuning

# An autoscaled InferenceSet: out under a bounded load, to zero (GPU nodes gone) when idle, back from zero.
demo-scale: install
	$(BIN)/kaito demo-scale

bench: install
	$(BIN)/python benchmarks/startup_bench.py
	$(BIN)/python benchmarks/sim_bench.py
	$(BIN)/python benchmarks/runtime_bench.py
	$(BIN)/python benchmarks/sizing_grid.py --quiet
	$(BIN)/python benchmarks/operator_bench.py
	$(BIN)/python benchmarks/tuning_bench.py
	$(BIN)/python benchmarks/relay_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
