# The two commands of the README: `make up` runs Wayfare, `make test` tests it.
UV_VERSION := 0.13.8
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: help setup up test servers lint format check bench clean

help:
	@echo "make up      set up and run the whole system (embedded, http://127.0.0.1:8000)"
	@echo "make test    set up and run the whole test suite (installs the test servers)"
	@echo "make lint    ruff format --check, ruff check, mypy --strict, import-linter"
	@echo "make check   lint + test"

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)" \
		|| python3 -m pip install --quiet --user --break-system-packages "uv==$(UV_VERSION)"
	@uv sync --frozen --quiet

up: setup
	uv run wayfare up

servers:
	@scripts/install-servers.sh

test: setup servers
	uv run pytest

lint: setup
	uv run ruff format --check .
	uv run ruff check .
	uv run mypy
	uv run lint-imports

format: setup
	uv run ruff format .
	uv run ruff check --fix .

check: lint test

clean:
	rm -rf .wayfare .mypy_cache .ruff_cache .pytest_cache
