# Two commands do all set-up: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DATA_DIR ?= data
MODELS_DIR ?= models
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev test serve bench clean chromium

# `make serve` installs what serving needs; `make test` adds the `dev` extra (pytest and friends).
install: $(STAMP)
install-dev: $(DEV_STAMP)

# Re-installs only when pyproject.toml changes, so later runs are quick.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[dev]'
	touch $(DEV_STAMP)

test: $(DEV_STAMP) chromium
	$(PY) -m pytest

# Best effort, never fails: tests/ui drive Debian's `chromium`; without it they skip and say so.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq chromium) || echo "note: apt-get could not install chromium; tests/ui will skip"; \
	  else echo "note: tests/ui need Chromium (as root: apt-get install chromium); they will skip"; fi; }

serve: $(STAMP)
	$(VENV)/bin/oml serve --data-dir $(DATA_DIR) --models-dir $(MODELS_DIR) --host $(HOST) --port $(PORT)

bench: $(DEV_STAMP)
	$(PY) benchmarks/knn.py
	$(PY) benchmarks/extraction.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) build *.egg-info
