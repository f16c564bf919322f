# The two commands of the README, and what they need.
VENV ?= .venv
PYTHON ?= python3

# Tests run on every core (pytest-xdist: one cluster and template per worker); then the tests marked
# `clock` run again from each of tests/clock.py's hard instants (23:59:30 in the venue's zone, DST days,
# 28/29 February, 31 December, a Monday 00:00).
PYTEST_WORKERS ?= auto

.PHONY: run test bench deps

run: $(VENV)/.installed deps
	$(VENV)/bin/brigade up

test: $(VENV)/.installed-dev deps
	@scripts/ensure-faketime
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS)
	BRIGADE_TEST_NOW=hard $(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) -m clock

bench: $(VENV)/.installed-dev deps
	$(VENV)/bin/python bench/outbox.py

deps:
	@scripts/ensure-postgres
	@scripts/ensure-fonts

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed
