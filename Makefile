# Two commands for operators (see README): `make run` and `make test`. Both create ./.venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
DAGSTER := $(VENV)/bin/dagster

.PHONY: setup run test ui bench pg-stop

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Migrate every table (embedded PostgreSQL and a generated sample unless configured), with its checks.
run: setup
	$(DAGSTER) asset materialize -m migration_pipeline.definitions --select '*'

# The whole test suite against a real (embedded) PostgreSQL; .ci/run calls exactly this.
test: setup
	$(PY) -m pytest

# The Dagster UI on http://127.0.0.1:3000, with the daemon; its runs, events and schedules are stored in
# PostgreSQL (dagster_home/dagster.yaml; the connection variables come from migration_pipeline.connect.instance).
ui: setup
	eval "$$($(PY) -m migration_pipeline.connect.instance env)" && $(DAGSTER) dev -h 127.0.0.1 -p 3000

bench: setup
	$(PY) bench/migrate_bench.py

pg-stop:
	$(PY) -m migration_pipeline.connect.local_postgres stop
