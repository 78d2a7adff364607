# Preflight: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# TASK=classify runs the classification pass (timm classifiers on object crops) in its own home.
TASK ?= detect
ifeq ($(TASK),classify)
export PREFLIGHT_CONFIG ?= $(CURDIR)/config/preflight_classify.yaml
export PREFLIGHT_HOME ?= $(CURDIR)/.preflight-classify
else
export PREFLIGHT_HOME ?= $(CURDIR)/.preflight
endif
export DAGSTER_HOME ?= $(PREFLIGHT_HOME)/dagster
export YOLO_CONFIG_DIR ?= $(PREFLIGHT_HOME)/ultralytics
export YOLO_OFFLINE ?= 1
export MPLBACKEND ?= Agg
export GX_ANALYTICS_ENABLED ?= false
export DAGSTER_DISABLE_TELEMETRY ?= 1

.PHONY: install browser redis demo test test-fast bench lint ui zoo clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The browser test drives Debian's headless Chromium; install it when missing (root, apt).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium + chromium-driver for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not installed and cannot install it here: the browser test will be skipped"; fi; }

# DEMO_ARGS=--all-candidates: every candidate of config/candidates.yaml (default: the two light ones)
demo: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/preflight demo $(DEMO_ARGS)

# The distributed-path test starts Debian's redis-server on 127.0.0.1; install it when missing.
redis:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server for the distributed-path test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
	      || echo "could not install redis-server: the distributed-path test will be skipped"; \
	  else echo "redis-server not installed and cannot install it here: the distributed-path test will be skipped"; fi; }

# CI: everything, including the tests that train (slow) and start servers (server).
test: install browser redis
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pytest -q tests

# Development: the pure tier (no training, no servers), under two minutes: two pytest-xdist
# workers (each with its own home, tests/conftest.py), a test file's tests on one worker.
test-fast: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow and not server" tests

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/metrics.py --memory
	$(BIN)/python benchmarks/evaluation.py

lint: install
	$(BIN)/ruff check preflight pipeline assets resources tests benchmarks

zoo: install
	$(BIN)/preflight zoo build

ui: install
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/preflight ui

clean:
	rm -rf $(PREFLIGHT_HOME)
