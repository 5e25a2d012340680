# Two commands matter: `make demo` and `make test`. Both build .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Optional local overrides (see .env.example); never committed.
-include .env
export

STACK := $(BIN)/python -m mlplatform.devstack.stack

.PHONY: venv up down status demo test test-fast lock clean lineage

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

status: venv
	$(STACK) status

demo: venv
	$(STACK) up
	eval "$$($(STACK) env)" && $(BIN)/python -m mlplatform.devstack.demo

test: venv
	$(BIN)/python -m pytest

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
	eval "$$($(STACK) env)" && $(BIN)/python -m mlplatform.lineage $(ARGS)
