# Tessera — the two commands a newcomer needs are `make demo` and `make test`.
# Every target creates and uses .venv itself, so both work on a fresh clone.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Test workers: one more than the cores, at most 4 (the live tests share one PostgreSQL and one
# Redis). The suite mostly waits — bots on replays at 10x, timeouts — so a third worker on two
# cores pays: the whole suite took 15 min 35 s with -n 2 (CI, 2026-12-06) and 11 min 50 s with
# -n 3 (quiet machine, 2026-12-07); on a slower machine the evening after, 18 min 0 s with -n 3
# (1,785 CPU seconds: CPU-bound), 16 min 19 s once bots and simulators started cheaper.
# `make test PYTEST_WORKERS=1` for one worker.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); n=$$((n + 1)); [ $$n -gt 4 ] && n=4; echo $$n)
# --dist loadgroup: a file's tests on one worker, the heaviest bot-process tests on one worker
# (one after another, started first); see tests/conftest.py.
# --durations: the 40 slowest tests in every run's output, where the suite's time goes (issue 20).
PYTEST_XDIST   := -n $(PYTEST_WORKERS) --dist loadgroup --durations=40 --durations-min=5

.DEFAULT_GOAL := help
.PHONY: help setup services tools alerts-check lint typecheck docs unit test demo bench clean peers

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Tessera needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ml,bench,ray,docs]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install Tessera with its dev, ml, bench, ray and docs extras

services:  ## start PostgreSQL and Redis on 127.0.0.1 if they are down (needed by the paper/live tests)
	@bash scripts/services.sh

tools:  ## install promtool, amtool, docker-compose and chromium from Debian if missing (for the tests)
	@bash scripts/tools.sh

alerts-check: tools  ## validate the Prometheus config and rules (promtool) and the Alertmanager config (amtool)
	promtool check config infra/prometheus/prometheus.yml
	promtool test rules infra/prometheus/tests/alerts_test.yml
	amtool check-config infra/alertmanager/alertmanager.yml

lint: setup  ## ruff check + ruff format --check
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup  ## mypy --strict on src/
	$(BIN)/mypy --strict src/

docs: setup  ## build the documentation site into site/ (strict: broken links fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

unit: setup  ## pytest only (in parallel, PYTEST_WORKERS workers)
	$(BIN)/pytest -q $(PYTEST_XDIST)

peers: setup  ## freqtrade's own venv (bench/.venv-freqtrade, ~70 s the first time; its client test needs it)
	$(PY) bench/peers/freqtrade_venv.py

test: setup services tools alerts-check lint typecheck docs peers  ## everything CI runs: lint, types, docs, the full test suite
	$(BIN)/pytest -q $(PYTEST_XDIST)

demo: setup  ## the main job end to end on the bundled real data
	$(BIN)/python -m tessera.demo

bench: setup  ## runnable benchmarks; figures go to docs/benchmarks.md by hand
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:  ## remove the venv and caches (keeps data/)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
