# Two commands on a fresh machine: `make train` (installs, then trains) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= cifar10
ARGS   ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install train test test-fast
install: $(VENV)/.installed

train: install
	$(VENV)/bin/alexnet train --data $(DATA) $(ARGS)

test: install
	$(VENV)/bin/python -m pytest

test-fast: install  # the quick loop: everything but the end-to-end training tests
	$(VENV)/bin/python -m pytest -m "not slow"
