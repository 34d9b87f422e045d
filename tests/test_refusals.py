"""Every request /graphql refuses before it runs gets a GraphQL-shaped JSON body with a stable
code (web/refusals.py): clients that parse every answer as JSON see why, never a parse error."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.support.refusals import refused

pytestmark = [pytest.mark.usefixtures("database_url"), pytest.mark.sqlite_only]

GRAPHQL_RESPONSE = "application/graphql-response+json"
APQ_HASH = "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code", "says"),
    [
        (b'[{"query":"{__typename}"}]', "application/json", 400, "BATCHING_DISABLED", "one by one"),
        (b'{"query": 5}', "application/json", 400, "BAD_REQUEST", "must be a string"),
        (b"{bad json", "application/json", 400, "BAD_REQUEST", "not JSON"),
        (b'"a string"', "application/json", 400, "BAD_REQUEST", "must be a JSON object"),
        (b'{"variables": {}}', "application/json", 400, "BAD_REQUEST", "No GraphQL query"),
        (b"{ __typename }", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE", "application/json"),
        (b"{ __typename }", "application/graphql", 415, "UNSUPPORTED_MEDIA_TYPE", "/json"),
    ],
    ids=["batch", "query not a string", "not JSON", "not an object", "no query", "text/plain",
         "application/graphql"],
)  # fmt: skip
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_malformed_posts_are_graphql_errors_with_a_code(
    http: httpx.AsyncClient,
    content: bytes,
    content_type: str,
    status: int,
    code: str,
    says: str,
    accept: str,
) -> None:
    headers = {"content-type": content_type, "accept": accept}
    response = await http.post("/graphql", content=content, headers=headers)
    assert says in refused(response, status, code)
    assert response.headers["content-type"].startswith(accept)


@pytest.mark.parametrize("setting_overrides", [{"apq_cache_entries": 0}])
async def test_an_apollo_persisted_query_hash_alone_says_not_supported(
    http: httpx.AsyncClient,
) -> None:
    """With no room for registered documents (APQ_CACHE_ENTRIES=0), Apollo's persisted-queries
    link backs off on this code and sends the document (tests/test_persisted.py: with room)."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": APQ_HASH}}
    response = await http.post("/graphql", json={"extensions": extensions})
    assert refused(response, 400, "PERSISTED_QUERY_NOT_SUPPORTED") == "PersistedQueryNotSupported"
    response = await http.get("/graphql", params={"extensions": orjson.dumps(extensions).decode()})
    assert refused(response, 400, "PERSISTED_QUERY_NOT_SUPPORTED") == "PersistedQueryNotSupported"


async def test_a_mutation_over_get_is_405_with_a_code(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={"query": "mutation { __typename }"})
    assert refused(response, 405, "METHOD_NOT_ALLOWED") == "Mutations are sent with POST, not GET."
    assert response.headers["allow"] == "GET, POST"


async def test_a_bad_get_parameter_is_400_with_a_code(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={"query": "{ __typename }", "variables": "{"})
    assert "The variables parameter" in refused(response, 400, "BAD_REQUEST")


async def test_a_body_over_the_limit_is_413_with_a_code(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", content=b"x" * (1024 * 1024 + 1))
    assert "MAX_BODY_BYTES" in refused(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_subscription_over_http_is_400_naming_websocket(
    http: httpx.AsyncClient, method: str
) -> None:
    query = "subscription Feed { customerEvents { type } }"
    if method == "GET":
        response = await http.get("/graphql", params={"query": query})
    else:
        response = await http.post("/graphql", json={"query": query})
    assert "WebSocket" in refused(response, 400, "BAD_REQUEST")
