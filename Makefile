# The two commands of the README, and what they need.
VENV ?= .venv
PYTHON ?= python3

.PHONY: run test bench deps

run: $(VENV)/.installed deps
	$(VENV)/bin/brigade up

test: $(VENV)/.installed-dev deps
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.installed-dev deps
	$(VENV)/bin/python bench/outbox.py

deps:
	@scripts/ensure-postgres

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed
