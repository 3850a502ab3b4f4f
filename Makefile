# The two commands a newcomer needs: `make demo` (set up, build the demo, train, serve) and
# `make test` (set up, lint, run the whole suite). Everything else here serves those two.
SHELL := /bin/bash
VENV := .venv
FLASK := $(VENV)/bin/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 8000
# `make test` runs the whole suite once per database; PostgreSQL is a throwaway local server.
TEST_DATABASES ?= sqlite postgresql

.PHONY: demo test setup setup-test lint bench clean-instance

setup:
	@scripts/bootstrap.sh

setup-test:
	@scripts/bootstrap.sh test
	@scripts/setup_browser.sh
	@scripts/setup_redis.sh
	$(if $(filter postgresql,$(TEST_DATABASES)),@scripts/setup_postgres.sh)

demo: setup
	@HOST=$(HOST) PORT=$(PORT) scripts/demo.sh

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The passes run side by side (scripts/run_tests.sh; TEST_PARALLEL=0: one after the other), both
# to their end, so one run shows every failure; the exit status is non-zero when either failed.
test: setup-test lint
	@VENV=$(VENV) scripts/run_tests.sh $(TEST_DATABASES)

bench: setup
	$(VENV)/bin/python bench/import_bench.py
	$(VENV)/bin/python bench/model_bench.py
	$(VENV)/bin/python bench/queue_bench.py
	$(VENV)/bin/python bench/load_bench.py

clean-instance:
	rm -rf instance
