# Two commands set everything up: `make run` serves the API, `make test` checks it.
# uv builds .venv from uv.lock with this machine's Python; it never downloads one.

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system

# uv from PATH, else a copy in a small tools environment of its own (.tools): Debian's
# Python refuses `pip install` into the system ("externally managed"), but a venv is ours.
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
PY := .venv/bin/python
CODE := server.py web schema db tests bench

.PHONY: run dev-idp test lint typecheck pytest schema docs protobuf env clean

# Serving needs the runtime packages only: no dev tools, no Node.
run: .venv/.synced-server
	$(PY) server.py

# A sign-in for browser apps on this machine, for development only (examples/browser-app).
dev-idp: .venv/.synced-server
	$(PY) server.py dev-idp

test: lint typecheck pytest

env: .venv/.synced node_modules/.package-lock.json

$(TOOLS)/bin/uv:
	@python3 -m venv $(TOOLS) || { echo "python3 -m venv failed: install the venv module (Debian: apt-get install python3-venv), or put uv on PATH"; exit 1; }
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv
	@$(TOOLS)/bin/uv --version

# --inexact keeps the dev packages of `make test` if they are there already.
.venv/.synced-server: pyproject.toml uv.lock $(filter $(TOOLS)/bin/uv,$(UV))
	$(UV) sync --locked --no-dev --inexact
	@touch $@

.venv/.synced: pyproject.toml uv.lock $(filter $(TOOLS)/bin/uv,$(UV))
	$(UV) sync --locked
	@touch $@ .venv/.synced-server

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

# Regenerate the settings reference after changing Settings (a test fails while they differ).
docs: .venv/.synced-server
	$(PY) server.py settings-reference > docs/settings.md

# The federated trace's message (schema/ftv1): reports_pb2.py and its stub from reports.proto,
# with the protoc of grpcio-tools (a dev package). Committed: serving needs only protobuf.
protobuf: .venv/.synced
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. schema/ftv1/reports.proto

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache

