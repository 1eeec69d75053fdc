# Two entry points: `make run` (the main job) and `make test` (the suite CI runs).
# Both create .venv on first use; torch is installed pinned before anything else so that
# pip takes the local CPU wheel instead of pulling CUDA packages.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= ../shared/glue
OUTPUT_DIR ?= output/camtl-mini-glue

.PHONY: run test lint check-data

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m camtl.data check --data_dir $(DATA_DIR)

check-data: $(VENV)/.installed
	$(PY) -m camtl.data check --data_dir $(DATA_DIR)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(VENV)/.installed lint
	$(PY) -m pytest -q
