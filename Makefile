# nextbest: `make demo` and `make test` do all the set-up on a machine with Python 3.11+ and make.
SHELL := /bin/bash
PYTHON ?= python3
# Use uv from PATH, or install it into .tools/ with pip.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=

.PHONY: help install system-packages demo test test-fast test-slow lint docs format bench eval-cdnow eval-world eval-nba eval-uplift notebooks strip-notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

# the optional Spark engine (pyspark) too: its tests are part of `make test`. Compiled to
# bytecode at install: where PYTHONDONTWRITEBYTECODE is set (CI images often set it), every
# process would otherwise compile pandas, MLflow and BentoML from source again (2.4 s
# against 5.8 s to import them, and the suite starts hundreds of processes)
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --extra spark --compile-bytecode
	$(UV) run --frozen python -m compileall -q -j 0 cdp features training policy serving nextbest benchmarks
	@touch $@

install: .venv/.synced  ## create .venv with the locked dependencies

# What the tests run beside Python: a real Redis server (the shared online store), Java 17
# (Spark), Chromium (the report's page, rendered headless) and promtool (the alert rules). Installed with apt-get when missing and run as root (CI); otherwise the line to
# run is printed.
SYSTEM_PACKAGES := redis-server:redis-server java:openjdk-17-jre-headless chromium:chromium promtool:prometheus
system-packages:  ## the Debian packages the tests need (redis-server, Java 17, Chromium, promtool), when missing
	@for pair in $(SYSTEM_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $${pair#*:}"; \
	    apt-get install -y -qq --no-install-recommends $${pair#*:} >/dev/null \
	      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $${pair#*:} >/dev/null; } \
	      || exit 1; \
	  else echo "the tests need $${pair%%:*}: sudo apt-get install $${pair#*:}"; exit 1; fi; \
	done

demo: install  ## generate a world, features, train, serve, a scripted chatbot conversation
	$(RUN) nextbest demo

# Two workers (pytest-xdist), each test file whole on one of them: module fixtures (a served
# world) are built once, the trained store and the demo once for both (tests/conftest.py);
# one OpenMP thread each (LightGBM), as the two workers share two cores.
test: install system-packages  ## the default test suite (slow tests excluded), on two workers
	OMP_NUM_THREADS=1 $(RUN) pytest -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: install  ## the edit-run loop: no training, no servers, no demo (pytest --fast)
	OMP_NUM_THREADS=1 $(RUN) pytest -m "not slow" --fast -n 2 --dist loadfile $(PYTEST_ARGS)

test-slow: install system-packages  ## only the slow tests (large worlds)
	$(RUN) pytest -m slow $(PYTEST_ARGS)

lint: install  ## ruff check and format check; the import layers (import-linter); the docs build
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict --quiet --site-dir site

docs: install  ## the documentation site in site/ (mkdocs-material; open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict --site-dir site

format: install  ## ruff fix and format
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install system-packages  ## benchmarks: figures and ratios against a reference in the same run
	$(RUN) python -m benchmarks

eval-cdnow: install  ## churn and CLV against their baselines on CDNOW (real data), later period
	$(RUN) python -m benchmarks.evaluate cdnow

eval-world: install  ## all three models against their baselines on a 20,000-customer world
	$(RUN) python -m benchmarks.evaluate world

eval-nba: install  ## the next best actions against what customers bought next, and baselines
	$(RUN) python -m benchmarks.nba

eval-uplift: install  ## a known simulated effect served and measured by `nextbest report`; an A/A run
	$(RUN) python -m benchmarks.uplift

notebooks: install  ## Jupyter Lab on notebooks/ (installs the `lab` group first)
	$(UV) sync --frozen --group lab
	$(UV) run --frozen --group lab jupyter lab notebooks/

strip-notebooks: install  ## remove outputs and execution counts from notebooks/ before a commit
	$(RUN) nbstripout --drop-empty-cells notebooks/*.ipynb

clean:  ## remove the environment and outputs (keeps mlruns/ and data/ folders)
	rm -rf .venv .tools .pytest_cache .ruff_cache
	find data -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
