"""GraphiQL with no CDN: pinned assets checked against published hashes, driven in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry

from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import GraphQLClient
from tests.support.node_tools import run_node
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.servers import running_server

ASSETS = ROOT / "static" / "graphiql"
PAGE = ROOT / "static" / "graphiql.html"
TAG = re.compile(r'(?:src|href)="/graphiql/([^"]+)"\s+integrity="(sha384-[^"]+)"')


def sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def pinned() -> dict[str, str]:
    """The assets the page loads, with the integrity hash it demands of each."""
    return dict(TAG.findall(PAGE.read_text()))


def published() -> dict[str, str]:
    """The hashes Strawberry publishes for the same files of react, react-dom and graphiql."""
    page = (Path(strawberry.__file__).parent / "static" / "graphiql.html").read_text()
    found = re.findall(r'(?:src|href)="https://[^"]+/([^"/]+)"\s+integrity="(sha384-[^"]+)"', page)
    return dict(found)


def test_every_asset_matches_its_published_integrity_hash() -> None:
    assets = pinned()
    assert sorted(assets) == [
        "graphiql.min.css",
        "graphiql.min.js",
        "react-dom.production.min.js",
        "react.production.min.js",
    ]
    for name, integrity in assets.items():
        assert sri(ASSETS / name) == integrity, name
        assert published()[name] == integrity, name


@pytest.mark.skipif(not (ROOT / "node_modules").exists(), reason="no node_modules (npm ci)")
def test_assets_are_the_npm_packages_files() -> None:
    """npm ci checked each package's tarball against package-lock.json's sha512."""
    sources = {
        "react.production.min.js": "react/umd/react.production.min.js",
        "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
        "graphiql.min.js": "graphiql/graphiql.min.js",
        "graphiql.min.css": "graphiql/graphiql.min.css",
    }
    for name, source in sources.items():
        assert (ASSETS / name).read_bytes() == (ROOT / "node_modules" / source).read_bytes()


async def test_page_loads_nothing_from_elsewhere(gql: GraphQLClient) -> None:
    response = await gql.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "://" not in response.text  # every script and style is this server's own
    for name in [*pinned(), "start.js"]:
        asset = await gql.http.get(f"/graphiql/{name}")
        assert asset.status_code == 200, name
        assert asset.content == (ASSETS / name).read_bytes()


pytestmark = pytest.mark.sqlite_only


def test_graphiql_runs_a_query_in_chromium(browser: str, database_url: str) -> None:
    screenshot = ARTIFACTS / "graphiql.png"
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        running_server(database_url) as server,
        httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {TEST_API_KEY}"}
        ) as client,
    ):
        body = {
            "query": 'mutation { createCustomer(input: {externalCustomerId: "c-1", data: '
            '{email: "ann@example.com"}}) { userErrors { code } } }'
        }
        assert (
            client.post("/graphql", json=body).json()["data"]["createCustomer"]["userErrors"] == []
        )
        query = '{ customer(externalCustomerId: "c-1") { externalCustomerId data { email } } }'
        done = run_node(
            browser,
            "graphiql.mjs",
            server.url,
            query,
            "ann@example.com",
            str(screenshot),
            env={"API_KEY": TEST_API_KEY},
        )
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert outcome.get("error") is None, outcome
    assert outcome["elsewhere"] == [], "the page asked another host for something"
    assert outcome["docsShown"] is True
    assert outcome["headersEditor"], "the headers editor is not showing"
    assert outcome["stored"], "the page stored nothing: the check below proves nothing"
    assert not [item for item in outcome["stored"] if TEST_API_KEY in item]  # kept in the page
    assert json.loads(outcome["result"])["data"] == {
        "customer": {"externalCustomerId": "c-1", "data": {"email": "ann@example.com"}}
    }
    # The page's first schema fetch, before the key is in, is refused; nothing else fails.
    assert all("status of 401" in error for error in outcome["consoleErrors"])
    assert screenshot.stat().st_size > 10_000
    assert done.returncode == 0


def test_graphiql_runs_a_subscription_in_chromium(browser: str, database_url: str) -> None:
    """A subscription typed into GraphiQL, its key in the Headers tab, shows an event from a
    change another client makes once the page has subscribed."""
    screenshot = ARTIFACTS / "graphiql-subscription.png"
    ARTIFACTS.mkdir(exist_ok=True)
    change = {
        "query": 'mutation { createCustomer(input: {externalCustomerId: "made-elsewhere", '
        'data: {email: "ann@example.com"}}) { userErrors { code } } }'
    }
    subscription = "subscription { customerEvents { type externalCustomerId } }"
    with running_server(database_url) as server:
        done = run_node(
            browser,
            "graphiql.mjs",
            server.url,
            subscription,
            "made-elsewhere",
            str(screenshot),
            env={"API_KEY": TEST_API_KEY, "POST_ONCE_SUBSCRIBED": json.dumps(change)},
        )
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert outcome.get("error") is None, outcome
    assert outcome["elsewhere"] == []
    assert outcome["change"]["data"] == {"createCustomer": {"userErrors": []}}
    # The key went as connection_init's payload, and the server acknowledged it.
    frames = outcome["socketFrames"]
    assert any(f.startswith("sent") and '"connection_init"' in f for f in frames), frames
    assert any(f.startswith("received") and '"connection_ack"' in f for f in frames), frames
    assert json.loads(outcome["result"])["data"] == {
        "customerEvents": {"type": "CUSTOMER_CREATED", "externalCustomerId": "made-elsewhere"}
    }
    assert done.returncode == 0
