# Two commands on a fresh machine: `make train` (installs, then trains) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= cifar10
ARGS   ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $@

# The tests also run the notebooks and the exports, so they install those extras too.
$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[test,export]"
	touch $@

.PHONY: install install-test train test test-fast
install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

train: install
	$(VENV)/bin/alexnet train --data $(DATA) $(ARGS)

test: install-test
	$(VENV)/bin/python -m pytest

test-fast: install-test  # the quick loop: everything but the end-to-end training tests
	$(VENV)/bin/python -m pytest -m "not slow"
