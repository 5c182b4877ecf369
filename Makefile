# nextbest: `make demo` and `make test` do all the set-up on a machine with Python 3.11+ and make.
SHELL := /bin/bash
PYTHON ?= python3
# Use uv from PATH, or install it into .tools/ with pip.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.PHONY: help install demo test test-slow lint format bench eval-cdnow eval-world notebooks strip-notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced  ## create .venv with the locked dependencies

demo: install  ## generate a world, features, train, serve, a scripted chatbot conversation
	$(RUN) nextbest demo

test: install  ## the default test suite (slow tests excluded)
	$(RUN) pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install  ## only the slow tests (large worlds)
	$(RUN) pytest -m slow $(PYTEST_ARGS)

lint: install  ## ruff check and format check; the import layers (import-linter)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports

format: install  ## ruff fix and format
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install  ## benchmarks: figures and ratios against a reference in the same run
	$(RUN) python -m benchmarks

eval-cdnow: install  ## churn and CLV against their baselines on CDNOW (real data), later period
	$(RUN) python -m benchmarks.evaluate cdnow

eval-world: install  ## all three models against their baselines on a 20,000-customer world
	$(RUN) python -m benchmarks.evaluate world

notebooks: install  ## Jupyter Lab on notebooks/ (installs the `lab` group first)
	$(UV) sync --frozen --group lab
	$(UV) run --frozen --group lab jupyter lab notebooks/

strip-notebooks: install  ## remove outputs and execution counts from notebooks/ before a commit
	$(RUN) nbstripout --drop-empty-cells notebooks/*.ipynb

clean:  ## remove the environment and outputs (keeps mlruns/ and data/ folders)
	rm -rf .venv .tools .pytest_cache .ruff_cache
	find data -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
