# Two commands set everything up: `make run` serves the API, `make test` checks it.
# uv builds .venv from uv.lock with this machine's Python; it never downloads one.

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system

UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := .venv/bin/python
CODE := server.py web schema db tests bench

.PHONY: run test lint typecheck pytest schema env clean

run: env
	$(PY) server.py

test: lint typecheck pytest

env: .venv/.synced node_modules/.package-lock.json

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked
	@touch $@

# The Node tooling of the client tests (graphql-http, Apollo, Playwright); the server needs no
# Node. Without npm those tests skip, saying why (CI=true makes them fail instead). Install
# scripts stay off: none is needed, and @apollo/rover's would download a binary from outside
# the registries.
node_modules/.package-lock.json: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the Node client tests will be skipped"; \
	fi

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
