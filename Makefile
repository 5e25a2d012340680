# Two commands matter: `make demo` and `make test`. Both build .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Optional local overrides live in .env (see .env.example; never committed). make never reads it: the platform's
# entry points parse it as a dotenv file and apply only the variables they use (mlplatform.devstack.localenv), so
# `$`, `#` and quotes in values arrive unchanged and the docker-compose secrets in it reach no recipe.
STACK := $(BIN)/python -m mlplatform.devstack.stack
# Runs a command with the embedded stack's environment plus the platform's settings from .env.
WITH_ENV := $(BIN)/python -m mlplatform.devstack.localenv

.PHONY: venv system-deps up down status demo replay test test-fast check-config lock clean lineage evaluate-ct up-distributed down-distributed reports-ui

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$$(grep '^uv==' requirements.txt)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	# Make the platform package importable everywhere (tests, Airflow components, task processes).
	echo "$(CURDIR)/include" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mlplatform.pth"
	touch $(STAMP)

up: venv
	$(STACK) up

down:
	@test -x $(BIN)/python && $(STACK) down || true

# docker-compose.yml's topology as local processes: CeleryExecutor with two workers on the machine's PostgreSQL
# and Redis, the lake and MLflow's artifacts on S3 (moto), MLflow with basic-auth. State in .data-distributed;
# down-distributed also drops the profile's databases (S3 is in memory and does not survive a stop).
up-distributed: venv
	$(BIN)/python -m mlplatform.devstack.distributed up

down-distributed:
	@test -x $(BIN)/python && $(BIN)/python -m mlplatform.devstack.distributed down || true

status: venv
	$(STACK) status

demo: venv
	$(STACK) up
	$(WITH_ENV) $(BIN)/python -m mlplatform.devstack.demo

# Any window through the running stack, e.g. `make replay FROM=2013-02-01 TO=2013-02-28`: history ingest from
# HISTORY_FROM to the day before FROM, the first training, then FROM..TO day by day (ingest -> score -> monitor, and
# the retrainings the drift policy asks for), with progress and a summary. MODEL: one model or several, comma-separated.
MODEL ?= flight_delay
HISTORY_FROM ?= 2013-01-01
replay: venv
	$(STACK) up
	$(WITH_ENV) $(BIN)/python -m mlplatform.devstack.replay --from '$(FROM)' --to '$(TO)' --model '$(MODEL)' \
		--history-from '$(HISTORY_FROM)'

# Debian packages the tests drive: Chromium for the reports page, docker-compose to validate the compose file,
# psql to run the compose file's database init script against the machine's PostgreSQL.
SYSTEM_DEPS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/docker-compose /usr/bin/psql
system-deps:
	@missing=0; for f in $(SYSTEM_DEPS); do test -x $$f || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages chromium chromium-driver docker-compose postgresql-client"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver docker-compose postgresql-client >/dev/null; \
	fi

test: venv system-deps check-config
	$(BIN)/python -m pytest

# Validate model files against the schema (default: the models directory), e.g. ARGS="include/models/x.yaml".
# Exit status 1 on any error; imports no Airflow, so it suits CI and pre-commit.
check-config: venv
	$(BIN)/python -m mlplatform.config check $(ARGS)

test-fast: venv
	$(BIN)/python -m pytest tests/unit tests/dags

# Re-resolve the lock from requirements.in (needs the package index).
lock: venv
	$(BIN)/uv pip compile --python-version 3.11 --no-header -q requirements.in -o requirements.txt
	sed -i '1i # Fully pinned lock compiled from requirements.in by `make lock` (uv pip compile). Do not edit by hand.' requirements.txt

clean: down
	rm -rf .data

# Lineage, e.g. `make lineage ARGS="prediction flight_delay 2013-02-05"` or `ARGS="model flight_delay 1"`.
lineage: venv
	$(WITH_ENV) $(BIN)/python -m mlplatform.lineage $(ARGS)

# Does continuous training pay? Replays Feb-Dec 2013 (frozen / weekly / drift-triggered retraining) in-process
# on a local lake under .data/evaluate-ct; writes docs/continuous_training.{md,json}. E.g. ARGS="--end 2013-03-31".
evaluate-ct: venv
	$(WITH_ENV) $(BIN)/python -m mlplatform.evaluation $(ARGS)

# Evidently's own UI over the daily monitoring runs: the runs the monitor wrote to the lake are first copied into a
# local workspace ($MLOPS_DATA_DIR/evidently, default .data/evidently); one project per model, on http://127.0.0.1:8000.
reports-ui: venv
	$(WITH_ENV) $(SHELL) -c '$(BIN)/python -m mlplatform.evidently_workspace sync \
		&& $(BIN)/evidently ui --workspace "$${MLOPS_EVIDENTLY_WORKSPACE:-$$MLOPS_DATA_DIR/evidently}" --host 127.0.0.1 --port 8000'
