"""Real clients against a real server process: graphql-http's audits and an Apollo gateway.

They need Node and `npm ci`'s node_modules: skipped without them on a laptop, required when
CI=true. They run on SQLite only: what they test is the HTTP and GraphQL layers, which the
backend does not touch. Every Node process runs with Apollo's telemetry off, and the
federation script refuses (and reports) any connection or look-up beyond this machine.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict

from schema.ftv1.reports_pb2 import Trace
from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.node_tools import run_node, save_artifact
from tests.support.paths import ROOT
from tests.support.servers import READY, running_server

BEARER = f"Bearer {TEST_API_KEY}"


pytestmark = pytest.mark.sqlite_only


def test_graphql_http_audits_all_pass(node: str, database_url: str) -> None:
    with running_server(database_url) as server:
        done = run_node(
            node, "http_audit.mjs", f"{server.url}/graphql", env={"AUDIT_AUTHORIZATION": BEARER}
        )
    report = save_artifact("graphql-http-audit.txt", done.stdout + done.stderr)
    lines = done.stdout.splitlines()
    assert lines[-1] == "audits: 0 failed, 0 warned", f"see {report}"
    assert len(lines) > 40  # every audit printed with its result
    assert all(line.startswith("ok ") for line in lines[:-1]), f"see {report}"
    assert done.returncode == 0


def test_apollo_federation_compatibility_suite(node: str) -> None:
    """The suite's products subgraph, written with Strawberry as the API is (its federated
    tracing too), under the suite's tests, with @apollo/gateway as the router. Every feature
    must pass, not only the required ones."""
    command = [sys.executable, "-m", "tests.support.compat_products", "0"]
    with subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True) as products:
        try:
            assert products.stderr is not None
            url = next(
                m.group(1) for line in products.stderr if (m := READY.search(line)) is not None
            )
            done = run_node(node, "federation_compat.mjs", f"{url}/")
        finally:
            products.terminate()
    save_artifact("federation-compatibility.txt", done.stdout + done.stderr)
    summary = json.loads(done.stdout.splitlines()[-1])["results"]
    required = [r["feature"] for r in summary if r["required"]]
    assert required == ["_service", "@key (single)", "@link"]
    assert [r["feature"] for r in summary if not r["passed"]] == [], done.stdout
    assert len(summary) >= 15, done.stdout  # federated tracing (ftv1) among them
    assert done.returncode == 0, done.stderr


def test_apollo_decodes_our_federated_traces(node: str, database_url: str) -> None:
    """extensions.ftv1 from either executor, decoded by Apollo's own protobuf code (what
    @apollo/gateway runs on a subgraph's trace), reads as our decoding of it does."""
    ask = {"authorization": BEARER, "apollo-federation-include-trace": "ftv1"}
    queries = [
        # the compiled path's answer (it covers this document)
        "{ customers(first: 5) { edges { node { ref: externalCustomerId data { email } } } } }",
        # graphql-core's, with an error on its node
        '{ a: customer(externalCustomerId: "c-1") { id } b: customers(first: -1) { totalCount } }',
    ]
    with (
        running_server(database_url) as server,
        httpx.Client(base_url=server.url, headers=ask) as client,
    ):
        create(client, "c-1", "ann@example.com")
        encoded = [
            client.post("/graphql", json={"query": q}).json()["extensions"]["ftv1"] for q in queries
        ]
    done = run_node(node, "ftv1_decode.mjs", *encoded)
    assert done.returncode == 0, done.stderr
    theirs = [json.loads(line) for line in done.stdout.splitlines()]
    ours = [Trace.FromString(base64.b64decode(e)) for e in encoded]
    for apollo, trace in zip(theirs, ours, strict=True):
        assert apollo["root"] == MessageToDict(trace.root)
        assert apollo["durationNs"] == str(trace.duration_ns)
        for name in ("startTime", "endTime"):
            stamp = getattr(trace, "start_time" if name == "startTime" else "end_time")
            assert apollo[name] == {"seconds": str(stamp.seconds), "nanos": stamp.nanos}
    assert theirs[0]["root"]["child"][0]["child"][0]["responseName"] == "edges"
    assert theirs[1]["root"]["child"][1]["error"][0]["message"] == "<masked>"


def create(client: httpx.Client, external_id: str, email: str) -> None:
    body = {
        "query": operation("create_customer"),
        "variables": {"input": {"externalCustomerId": external_id, "data": {"email": email}}},
    }
    assert client.post("/graphql", json=body).json()["data"]["createCustomer"]["userErrors"] == []


def test_apollo_gateway_joins_our_subgraph_with_another(node: str, database_url: str) -> None:
    orders = [
        {"id": "o-1", "total": 12.5, "customer": "c-1"},
        {"id": "o-2", "total": 3.0, "customer": "c-2"},
        {"id": "o-3", "total": 7.25, "customer": "c-1"},
    ]
    with (
        running_server(database_url) as server,
        httpx.Client(base_url=server.url, headers={"authorization": BEARER}) as client,
    ):
        create(client, "c-1", "ann@example.com")
        create(client, "c-2", "bob@example.com")
        start = {
            "query": operation("start_kyc_verification"),
            "variables": {"input": {"externalCustomerId": "c-1"}},
        }
        assert (
            client.post("/graphql", json=start).json()["data"]["startKycVerification"]["userErrors"]
            == []
        )
        done = run_node(
            node,
            "federation.mjs",
            f"{server.url}/graphql",
            json.dumps(orders),
            env={"CUSTOMERS_AUTHORIZATION": BEARER},
        )
    save_artifact("federation.json", done.stdout + done.stderr)
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert outcome["strangers"] == [], "something tried to reach beyond 127.0.0.1"
    assert all(host.startswith("127.0.0.1:") for host in outcome["outbound"])
    results = outcome["results"]
    assert results["ordersWithCustomers"] == {
        "data": {
            "orders": [
                {
                    "id": "o-1",
                    "total": 12.5,
                    "customer": {
                        "externalCustomerId": "c-1",
                        "kycStatus": "PENDING",
                        "data": {"email": "ann@example.com"},
                    },
                },
                {
                    "id": "o-2",
                    "total": 3,
                    "customer": {
                        "externalCustomerId": "c-2",
                        "kycStatus": None,
                        "data": {"email": "bob@example.com"},
                    },
                },
                {
                    "id": "o-3",
                    "total": 7.25,
                    "customer": {
                        "externalCustomerId": "c-1",
                        "kycStatus": "PENDING",
                        "data": {"email": "ann@example.com"},
                    },
                },
            ]
        }
    }
    assert results["customerWithOrders"] == {
        "data": {
            "customer": {
                "externalCustomerId": "c-1",
                "data": {"email": "ann@example.com"},
                "orders": [{"id": "o-1", "total": 12.5}, {"id": "o-3", "total": 7.25}],
            }
        }
    }
    assert done.returncode == 0, done.stderr


def test_graphql_ws_client_subscribes_resumes_and_is_refused_a_bad_key(
    node: str, database_url: str
) -> None:
    """The subscription through graphql-ws's own client (Apollo Client and urql use it)."""
    with running_server(database_url) as server:
        done = run_node(node, "subscription.mjs", f"{server.url}/graphql", TEST_API_KEY)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {
        "live": ["CUSTOMER_CREATED node-1 key:tests", "CUSTOMER_CREATED node-2 key:tests"],
        "resumed": ["node-3", "node-4"],
        "badKey": 4401,
    }, done.stderr
    assert done.returncode == 0
