# Jingwei SCRM. `make run` starts the product; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint check install demo migrate bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

migrate: install
	$(BIN)/jingwei migrate --no-input -v0

demo: migrate
	$(BIN)/jingwei demo

run: migrate
	$(BIN)/jingwei collectstatic --no-input -v0
	$(BIN)/jingwei demo
	@echo "控制台 / API: http://$${HOST:-127.0.0.1}:$${PORT:-8000}/   API 文档: /api/docs   管理后台: /admin/"
	MAIL_INTAKE_PORT=$${MAIL_INTAKE_PORT:-2525} NOTIFY_SIMULATORS_PORT=$${NOTIFY_SIMULATORS_PORT:-8025} $(BIN)/jingwei run

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/jingwei makemigrations --check --dry-run -v0
	$(BIN)/pytest $(PYTEST_ARGS)

# `make bench NAME=flows` runs bench/flows/run.py; `make bench` runs every bench/<name>/run.py.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/jw_bench
BENCH_NAMES = $(if $(NAME),$(NAME),$(patsubst bench/%/run.py,%,$(wildcard bench/*/run.py)))

bench: install
	$(BIN)/pip install --quiet spiffworkflow
	@set -e; for name in $(BENCH_NAMES); do \
		echo "== bench/$$name"; \
		DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.$$name.run $(BENCH_ARGS); \
	done

clean:
	rm -rf $(VENV) var staticfiles .mypy_cache .ruff_cache .hypothesis
