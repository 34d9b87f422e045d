"""schemathesis fuzzes the GraphQL API of a real server process, with a key of every scope.

A few hundred generated operations (queries and mutations, valid and strange inputs): no
response may be a 5xx, and every response must fit the schema. The run's report is kept as
artifacts/schemathesis.txt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.node_tools import save_artifact
from tests.support.paths import ROOT
from tests.support.servers import running_server

EXAMPLES_PER_OPERATION = 50


pytestmark = pytest.mark.sqlite_only


def test_schemathesis_finds_no_server_error(database_url: str) -> None:
    bearer = f"Bearer {TEST_API_KEY}"
    with running_server(database_url) as server:
        with httpx.Client(base_url=server.url, headers={"authorization": bearer}) as client:
            for n in range(3):  # some data, so that queries have something to return
                body = {
                    "query": operation("create_customer"),
                    "variables": {
                        "input": {
                            "externalCustomerId": f"c-{n}",
                            "data": {"email": f"c{n}@example.com"},
                        }
                    },
                }
                assert client.post("/graphql", json=body).status_code == 200
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{server.url}/graphql",
                "--header",
                f"Authorization: {bearer}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--phases",
                "fuzzing",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                "20261125",
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = save_artifact("schemathesis.txt", done.stdout + done.stderr)
    assert done.returncode == 0, f"schemathesis found problems: see {report}\n{done.stdout[-3000:]}"
    assert " passed" in done.stdout
    assert "Operations:" in done.stdout
