# Two commands for operators (see README): `make run` and `make test`. Both create ./.venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/migration-pipeline
PORT ?= 3000

.PHONY: setup run test ui bench pg-stop

$(VENV)/.installed: pyproject.toml setup.py $(wildcard migration_pipeline/move/csrc/*)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# dagster commands run in this directory read .env: they record into the shared instance too
	echo "DAGSTER_HOME=$(CURDIR)/dagster_home" > .env
	touch $@

setup: $(VENV)/.installed

# Migrate every table (embedded PostgreSQL and a generated sample unless configured), with its checks and
# reports, as a Dagster run recorded in the instance `make ui` shows; ends with a summary.
run: setup
	$(CLI) migrate

# The whole test suite against a real (embedded) PostgreSQL; .ci/run calls exactly this.
test: setup
	$(PY) -m pytest

# The Dagster UI on http://127.0.0.1:$(PORT) (make ui PORT=3001), with the daemon; runs, events and
# schedules are stored in PostgreSQL (dagster_home/dagster.yaml), the same history as make run's.
ui: setup
	$(CLI) ui --port $(PORT)

bench: setup
	$(PY) bench/migrate_bench.py

pg-stop:
	$(PY) -m migration_pipeline.connect.local_postgres stop
