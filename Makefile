# Preflight: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFLIGHT_HOME ?= $(CURDIR)/.preflight
export DAGSTER_HOME ?= $(PREFLIGHT_HOME)/dagster
export YOLO_CONFIG_DIR ?= $(PREFLIGHT_HOME)/ultralytics
export YOLO_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: install demo test bench lint ui zoo clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/preflight demo

test: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check preflight pipeline assets resources tests benchmarks

zoo: install
	$(BIN)/preflight zoo build

ui: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/preflight ui

clean:
	rm -rf $(PREFLIGHT_HOME)
