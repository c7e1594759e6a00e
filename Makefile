# blindeval — developer entry points.
#
#   make demo    create .venv, install, migrate, load the real fixtures, open the demo
#                campaign, start the web server and a Celery worker (Ctrl-C stops both)
#   make test    create/reuse .venv, then ruff, ruff format --check, mypy and the whole pytest suite
#   make lint    ruff, ruff format --check and mypy only
#   make run     the development web server on http://127.0.0.1:8000
#   make worker  a Celery worker on the default and generation queues
#   make clean   caches and test artefacts; `make distclean` also removes .venv and var/
#
# Only Python 3.11 and make are needed. The virtualenv is reinstalled only when
# requirements.txt or requirements-dev.txt change (a stamp named after their hash).

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# pip warns once per package about an extra index folder this machine's pip config names but lacks.
PIP_NOISE := is ignored: it is neither a file nor a directory

REQ_HASH := $(shell cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

# python3.11 if it is on PATH, else python3 when that is 3.11.
PYTHON311 := $(shell \
	if command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import sys' >/dev/null 2>&1; then echo python3.11; \
	elif command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then echo python3; \
	fi)

.PHONY: help venv install demo test lint pytest run worker clean distclean

help:
	@sed -n '3,10p' Makefile | sed 's/^# \{0,1\}//'

$(PY):
	@if [ -z "$(PYTHON311)" ]; then \
		echo "make: Python 3.11 is required (neither python3.11 nor a python3 of version 3.11 is on PATH)." >&2; exit 1; fi
	@echo ">> creating $(VENV) with $(PYTHON311)"
	@$(PYTHON311) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: '$(PYTHON311) -m venv' failed; on Debian/Ubuntu install the python3.11-venv package." >&2; exit 1; }

$(STAMP): $(PY)
	@echo ">> installing requirements-dev.txt into $(VENV) (first run: a few minutes)"
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m pip install --quiet -r requirements-dev.txt 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

venv install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --host $(HOST) --port $(PORT)

test: $(STAMP)
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

run: $(STAMP)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py runserver $(HOST):$(PORT)

worker: $(STAMP)
	$(BIN)/celery -A evalsite worker -Q default,generation --loglevel=INFO

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts benchmarks/out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var
