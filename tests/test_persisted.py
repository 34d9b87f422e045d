"""Persisted documents (web/persisted.py): Apollo's automatic persisted queries, a trusted
documents manifest in either format, and the policy per kind of principal, over real HTTP (the
app under uvicorn on a port of 127.0.0.1) on both executors; a manifest that cannot be used
stops the start."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.identity import IdentityProvider
from tests.support.paths import ROOT
from tests.support.refusals import refused
from tests.support.sockets import socket
from web.view import GraphQLView

pytestmark = pytest.mark.both_executors

READ = """query Customer($id: String!) {
  customer(externalCustomerId: $id) { externalCustomerId data { email city } }
}"""
# Another document, in no manifest.
EMAIL = "query Email($id: String!) { customer(externalCustomerId: $id) { data { email } } }"
CITY = "query City($id: String!) { customer(externalCustomerId: $id) { data { city } } }"
DELETE = """mutation Delete($id: String!) {
  deleteCustomer(input: {externalCustomerId: $id}) { deletedExternalCustomerId }
}"""
ANN = {"externalCustomerId": "c-1", "data": {"email": "ann@example.com", "city": "Trenton"}}
READ_ANN = {"customer": ANN}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str, *, send_text: bool = False, **more: Any) -> dict[str, Any]:
    """A request naming `text` by its hash, as Apollo's link sends it (with the text when it
    registers it)."""
    body: dict[str, Any] = {
        "variables": {"id": "c-1"},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}},
        **more,
    }
    if send_text:
        body["query"] = text
    return body


def manifest(kind: str, directory: Path, *texts: str) -> Path:
    """A trusted documents manifest of `texts`, in GraphQL Code Generator's format or Apollo's."""
    path = directory / f"{kind}.json"
    if kind == "codegen":  # persisted-documents.json: {"sha256:<hash>": document}
        value: Any = {f"sha256:{sha256(text)}": text for text in texts}
    else:
        value = {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [
                {"id": sha256(text), "name": text.split()[1].split("(")[0], "type": "query",
                 "body": text}
                for text in texts
            ],
        }  # fmt: skip
    path.write_text(json.dumps(value))
    return path


@pytest.fixture
async def served(app: Starlette) -> AsyncIterator[str]:
    """The test's app (its lifespan run by the `app` fixture) under uvicorn; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):  # as tests/support/sockets.py's `serving` waits
        while not server.started:  # uvicorn sets it once it listens: no event to wait on
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def http(served: str) -> AsyncIterator[httpx.AsyncClient]:
    """Over real HTTP, with the tests' API key."""
    headers = {"authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as client:
        yield client


@pytest.fixture
async def anonymous(served: str) -> AsyncIterator[httpx.AsyncClient]:
    """Over real HTTP with no credential: each test sends its own."""
    async with httpx.AsyncClient(base_url=served) as client:
        yield client


@pytest.fixture
def setting_overrides(
    request: pytest.FixtureRequest, tmp_path: Path, idp: IdentityProvider
) -> dict[str, Any]:
    """Identity-provider tokens accepted, and the test's own settings (`indirect`), where
    `trusted_documents_file` names a manifest format: one of READ and DELETE."""
    overrides: dict[str, Any] = {**idp.settings(), **getattr(request, "param", {})}
    if kind := overrides.get("trusted_documents_file"):
        overrides["trusted_documents_file"] = manifest(kind, tmp_path, READ, DELETE)
    return overrides


@pytest.fixture
async def ann(http: httpx.AsyncClient) -> None:
    """The customer c-1, made with its hash sent too: so under every policy of these tests."""
    create = operation("create_customer")
    body = persisted(
        create, send_text=True, variables={"input": {**ANN, "externalCustomerId": "c-1"}}
    )
    assert data(await http.post("/graphql", json=body))["createCustomer"]["userErrors"] == []


def view_of(app: Starlette) -> GraphQLView:
    view: GraphQLView = app.state.view
    return view


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def not_found(response: httpx.Response) -> None:
    """Apollo Server's answer to an unknown hash: 200, the code, no data, never cached."""
    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert response.headers["cache-control"] == "private, no-cache, must-revalidate"


@pytest.mark.usefixtures("ann")
async def test_apq_asks_for_the_document_once_then_runs_it_by_its_hash(
    http: httpx.AsyncClient, app: Starlette, compiled_path: bool
) -> None:
    not_found(await http.post("/graphql", json=persisted(READ)))
    assert data(await http.post("/graphql", json=persisted(READ, send_text=True))) == READ_ANN
    answered = view_of(app).compiled_answers
    assert data(await http.post("/graphql", json=persisted(READ))) == READ_ANN
    # The document was compiled when it was registered; its hash alone runs the plan.
    assert view_of(app).compiled_answers == answered + compiled_path


@pytest.mark.usefixtures("ann")
async def test_a_hash_that_is_not_the_documents_is_refused(http: httpx.AsyncClient) -> None:
    body = persisted(READ, send_text=True)
    body["query"] = EMAIL
    response = await http.post("/graphql", json=body)
    assert "not the SHA-256 of the query" in refused(response, 400, "PERSISTED_QUERY_HASH_MISMATCH")
    not_found(await http.post("/graphql", json=persisted(READ)))  # nothing was registered
    not_found(await http.post("/graphql", json=persisted(EMAIL)))


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ({"version": 2, "sha256Hash": sha256(READ)}, "persistedQuery.version must be 1"),
        ({"version": 1, "sha256Hash": "abc"}, "sha256Hash must be a SHA-256 hash"),
        ({"version": 1}, "sha256Hash must be a SHA-256 hash"),
        ({"version": True, "sha256Hash": sha256(READ)}, "persistedQuery.version must be 1"),
        ("yes", "persistedQuery.version must be 1"),
    ],
)
async def test_a_malformed_persisted_query_is_a_bad_request(
    http: httpx.AsyncClient, marker: Any, says: str
) -> None:
    response = await http.post("/graphql", json={"extensions": {"persistedQuery": marker}})
    assert says in refused(response, 400, "BAD_REQUEST")


@pytest.mark.usefixtures("ann")
async def test_reads_go_by_get_and_writes_stay_posts(
    http: httpx.AsyncClient, app: Starlette, compiled_path: bool
) -> None:
    def get(text: str) -> dict[str, str]:
        marker = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}
        return {"variables": '{"id": "c-1"}', "extensions": json.dumps(marker)}

    not_found(await http.get("/graphql", params=get(READ)))
    assert data(await http.post("/graphql", json=persisted(READ, send_text=True))) == READ_ANN
    answered = view_of(app).compiled_answers
    assert data(await http.get("/graphql", params=get(READ))) == READ_ANN
    assert view_of(app).compiled_answers == answered + compiled_path  # as by POST

    registered = await http.post("/graphql", json=persisted(DELETE, send_text=True))
    assert data(registered) == {"deleteCustomer": {"deletedExternalCustomerId": "c-1"}}
    response = await http.get("/graphql", params=get(DELETE))
    assert refused(response, 405, "METHOD_NOT_ALLOWED") == "Mutations are sent with POST, not GET."


@pytest.mark.parametrize("setting_overrides", [{"apq_cache_entries": 2}], indirect=True)
@pytest.mark.usefixtures("ann")
async def test_the_registered_documents_are_a_bounded_lru(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    analyser = view_of(app).documents.analyser  # type: ignore[union-attr]
    for text in (READ, EMAIL):
        data(await http.post("/graphql", json=persisted(text, send_text=True)))
    data(await http.post("/graphql", json=persisted(READ)))  # used: EMAIL is the oldest now
    data(await http.post("/graphql", json=persisted(CITY, send_text=True)))

    not_found(await http.post("/graphql", json=persisted(EMAIL)))
    assert analyser.pinned(EMAIL, "Email") is None  # its analysis let go with it
    assert data(await http.post("/graphql", json=persisted(READ))) == READ_ANN
    city = await http.post("/graphql", json=persisted(CITY))
    assert data(city) == {"customer": {"data": {"city": "Trenton"}}}


@pytest.mark.parametrize("setting_overrides", [{"apq_cache_entries": 0}], indirect=True)
async def test_with_no_room_for_documents_apq_is_not_supported(http: httpx.AsyncClient) -> None:
    """Apollo's link turns itself off on this code and sends whole documents from then on."""
    response = await http.post("/graphql", json=persisted(READ))
    assert refused(response, 400, "PERSISTED_QUERY_NOT_SUPPORTED") == "PersistedQueryNotSupported"


@pytest.mark.parametrize(
    "setting_overrides",
    [{"trusted_documents_file": "codegen"}, {"trusted_documents_file": "apollo"}],
    ids=["codegen", "apollo"],
    indirect=True,
)
@pytest.mark.usefixtures("ann")
async def test_a_manifests_documents_are_compiled_at_start_and_run_by_hash_or_id(
    http: httpx.AsyncClient, app: Starlette, compiled_path: bool
) -> None:
    view = view_of(app)
    analysis = view.documents.analyser.pinned(READ, "Customer")  # type: ignore[union-attr]
    assert analysis is not None
    assert analysis.errors == ()
    # Analysed and planned when the manifest was loaded: before any request.
    assert (analysis.derived.get("plan") is not None) == compiled_path

    answered = view.compiled_answers
    assert data(await http.post("/graphql", json=persisted(READ))) == READ_ANN
    by_id = {"documentId": f"sha256:{sha256(READ)}", "variables": {"id": "c-1"}}
    assert data(await http.post("/graphql", json=by_id)) == READ_ANN
    assert view.compiled_answers == answered + 2 * compiled_path
    assert view.documents.analyser.pinned(READ, "Customer") is analysis  # type: ignore[union-attr]

    unknown = {"documentId": f"sha256:{sha256(EMAIL)}", "variables": {"id": "c-1"}}
    not_found(await http.post("/graphql", json=unknown))


KNOWN_FOR_TOKENS = {"trusted_documents_file": "codegen", "token_documents": "known"}


@pytest.mark.parametrize("setting_overrides", [KNOWN_FOR_TOKENS], indirect=True)
@pytest.mark.usefixtures("ann")
async def test_tokens_held_to_known_documents(
    anonymous: httpx.AsyncClient, http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    token = idp.token(sub="app", scope="customers:read")
    browser = {"authorization": f"Bearer {token}"}

    async def post(body: dict[str, Any]) -> httpx.Response:
        return await anonymous.post("/graphql", json=body, headers=browser)

    assert data(await post(persisted(READ))) == READ_ANN  # the app's, by hash
    assert data(await post({"query": READ, "variables": {"id": "c-1"}})) == READ_ANN  # whole
    says = "only the documents its app was built with"
    for body in (
        {"query": EMAIL, "variables": {"id": "c-1"}},
        persisted(EMAIL),
        persisted(EMAIL, send_text=True),
        {"documentId": sha256(EMAIL)},
    ):
        assert says in refused(await post(body), 400, "UNKNOWN_DOCUMENT")
    # API keys stay free (API_KEY_DOCUMENTS=any).
    assert data(await http.post("/graphql", json={"query": EMAIL, "variables": {"id": "c-1"}}))


@pytest.mark.parametrize("setting_overrides", [{"api_key_documents": "apq"}], indirect=True)
@pytest.mark.usefixtures("ann")
async def test_api_keys_held_to_persisted_documents(
    anonymous: httpx.AsyncClient, http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    whole = {"query": EMAIL, "variables": {"id": "c-1"}}
    response = await http.post("/graphql", json=whole)
    assert "add extensions.persistedQuery" in refused(response, 400, "PERSISTED_QUERY_REQUIRED")
    not_found(await http.post("/graphql", json=persisted(EMAIL)))
    assert data(await http.post("/graphql", json=persisted(EMAIL, send_text=True)))
    assert data(await http.post("/graphql", json=persisted(EMAIL)))
    # Tokens stay free (TOKEN_DOCUMENTS=any).
    token = idp.token(sub="app", scope="customers:read")
    headers = {"authorization": f"Bearer {token}"}
    assert data(await anonymous.post("/graphql", json=whole, headers=headers))


# -- a manifest that cannot be used stops the start ------------------------------------------


@pytest.mark.one_executor("the server stops before it serves")
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read"),
        ("{not json", "is not JSON"),
        ('{"format": "apollo-persisted-query-manifest", "version": 2}', "format this server"),
        ('{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{}]}',
         "operations[0] has no string id and body"),
        ('["query { __typename }"]', "neither manifest format"),
        (json.dumps({"sha256:abc": "query { customer { nope } }"}), "'sha256:abc' cannot run"),
    ],
    ids=["missing", "not JSON", "version", "operation", "a list", "invalid document"],
)  # fmt: skip
def test_a_manifest_that_cannot_be_used_stops_the_start(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'never.db'}",
        "TRUSTED_DOCUMENTS_FILE": str(path),
    }
    command = [sys.executable, "server.py", "--port", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr  # the problem, and what to do
    assert lines[0].startswith("customer-api: TRUSTED_DOCUMENTS_FILE"), done.stderr
    assert says in lines[0], done.stderr
    assert not (tmp_path / "never.db").exists()  # refused before the database was touched


@pytest.mark.parametrize("setting_overrides", [KNOWN_FOR_TOKENS], indirect=True)
@pytest.mark.usefixtures("ann")
async def test_a_websocket_is_no_way_around_the_policy(served: str, idp: IdentityProvider) -> None:
    token = idp.token(sub="app", scope="customers:read")
    async with socket(served.replace("http://", "ws://") + "/graphql") as ws:
        assert (await ws.init(token))["type"] == "connection_ack"
        await ws.subscribe("1", EMAIL, {"id": "c-1"})
        refusal = await ws.receive()
        assert refusal["type"] == "error"
        assert [e["extensions"]["code"] for e in refusal["payload"]] == ["UNKNOWN_DOCUMENT"]
        await ws.subscribe("2", READ, {"id": "c-1"})
        assert (await ws.receive())["payload"]["data"] == READ_ANN
