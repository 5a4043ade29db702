# PIVOT developer commands. `make help` lists them. CI runs `make test` (see .ci/run).
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: help install run test lint format ts-types bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create .venv with the daemon, TUI, training stack, dev tools and example frameworks

# torch is pinned through constraints.txt: a bare torch requirement pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev,examples]'
	touch $@

run: install ## Start pivotd on 127.0.0.1:8000 with a live demo run (another port: make run PORT=8001; Ctrl-C stops it)
	$(BIN)/pivotd --demo --port $(PORT)

test: install ## Lint, check the import contracts, then run the whole test suite against real daemons
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: install ## ruff check, format check and the import contracts (pyproject.toml) only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ts-types: install ## Regenerate the TypeScript client's types (clients/typescript/src/schema.ts) from pivotd's OpenAPI document
	cd clients/typescript && npm ci --no-audit --no-fund && PIVOTD=$(abspath $(BIN))/pivotd npm run generate

bench: install ## Run the benchmarks (figures go in docs/performance.md)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/sdk_overhead.py --threads 1
	$(BIN)/python bench/idle_cpu.py
	$(BIN)/python bench/rules_overhead.py
	$(BIN)/python bench/tui_load.py
	$(BIN)/python bench/trainer.py --rounds 7 --epochs 4 --threads 1
	$(BIN)/python bench/infer.py
	$(BIN)/python bench/telemetry.py

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache *.egg-info
