# Two commands set everything up: `make run` serves the API, `make test` checks it.
# uv builds .venv from uv.lock with this machine's Python; it never downloads one.

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system

UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := .venv/bin/python
CODE := server.py schema db tests bench

.PHONY: run test lint typecheck pytest schema env clean

run: env
	$(PY) server.py

test: lint typecheck pytest

env: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked
	@touch $@

lint: env
	$(PY) -m ruff check $(CODE)
	$(PY) -m ruff format --check $(CODE)

typecheck: env
	$(PY) -m mypy $(CODE)

pytest: env
	$(PY) -m pytest $(PYTEST_ARGS)

# Regenerate the committed SDL after changing the schema (a test fails while they differ).
schema: env
	$(PY) server.py export-schema > graphql/schema.graphql

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
