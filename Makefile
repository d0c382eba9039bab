# Two commands do all the set-up: `make run` (the main job) and `make test` (the suite). Both idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data/fashion_mnist)
ifneq ($(wildcard $(SHARED_DATA)/train-images-idx3-ubyte.gz),)
export LRLAB_DATA ?= $(SHARED_DATA)
endif
export MPLBACKEND ?= Agg
export NO_MKDOCS_2_WARNING ?= 1
# `make test` is the quick suite; tests marked slow (long real training: accuracy claims, faults through whole
# runs, bf16, Ray, torch.distributed) run as well in CI (CI=true) and with `make test SUITE=all`.
SUITE ?= $(if $(filter true,$(CI)),all,quick)
MARKS := $(if $(filter quick,$(SUITE)),-m "not slow",)

.PHONY: run test lint format clean bench docs

$(BIN)/.installed: pyproject.toml Makefile constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,lrfree,lightning,workloads,web,ray]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/lrlab fit

test: $(BIN)/.installed
	$(BIN)/ruff check lrlab tests benchmarks examples
	$(BIN)/ruff format --check lrlab tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q -n auto --dist worksteal --durations=15 $(MARKS) $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check lrlab tests benchmarks examples
	$(BIN)/lint-imports

docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict
	@echo "the site is in site/ (open site/index.html), or: $(BIN)/mkdocs serve"

format: $(BIN)/.installed
	$(BIN)/ruff format lrlab tests benchmarks examples
	$(BIN)/ruff check --fix lrlab tests benchmarks examples

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/optim_step.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
