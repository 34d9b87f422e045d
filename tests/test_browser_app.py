"""The example browser app (examples/browser-app), built with Vite and served on its own origin,
driven in Debian's Chromium against a real server: CORS, sign-in tokens, the normalised cache,
and customers:self, as a frontend meets them."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.identity import IdentityProvider
from tests.support.node_tools import find_chromium, find_node, run_node, run_tool, save_artifact
from tests.support.paths import ARTIFACTS
from tests.support.servers import Server, running_server

OTHER = {"input": {"externalCustomerId": "c-web-2", "data": {"email": "bob@example.com"}}}
APP = Path(__file__).resolve().parent.parent / "examples" / "browser-app"


pytestmark = pytest.mark.sqlite_only  # the data paths are tested on both backends elsewhere


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's static files: types generated from the operations, then `vite build`."""
    node = find_node()
    find_chromium()
    generated = run_tool(node, "@graphql-codegen/cli/cjs/bin.js", "--config", "codegen.ts")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    out = tmp_path_factory.mktemp("browser-app")
    built = run_tool(node, "vite/bin/vite.js", "build", str(APP), "--outDir", str(out))
    assert built.returncode == 0, built.stdout + built.stderr
    return out


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """The folder served on 127.0.0.1 at a port of its own: an origin of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drive(node: str, app: str, server: Server, scenario: str, **params: str) -> dict[str, Any]:
    screenshot = ARTIFACTS / f"browser-app-{scenario}.png"
    ARTIFACTS.mkdir(exist_ok=True)
    done = run_node(
        node,
        "browser_app.mjs",
        app,
        f"{server.url}/graphql",
        scenario,
        str(screenshot),
        json.dumps(params),
    )
    save_artifact(f"browser-app-{scenario}.json", done.stdout + done.stderr)
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert outcome.get("error") is None, outcome
    assert outcome["elsewhere"] == [], "the page asked another host for something"
    assert screenshot.stat().st_size > 10_000
    assert done.returncode == 0
    return outcome


@contextmanager
def api_for(database_url: str, idp: IdentityProvider, origin: str) -> Iterator[Server]:
    settings = idp.environment()
    with running_server(
        database_url,
        CORS_ALLOW_ORIGINS=origin,
        JWT_ISSUER=settings["JWT_ISSUER"],
        JWT_AUDIENCE=settings["JWT_AUDIENCE"],
        JWT_JWKS_URL=settings["JWT_JWKS_URL"],
    ) as server:
        yield server


def test_the_app_signs_in_and_keeps_a_customer_in_its_cache(
    browser: str, database_url: str, built_app: Path, idp: IdentityProvider
) -> None:
    with static_site(built_app) as app, api_for(database_url, idp, app) as server:
        (built_app / "config.json").write_text(
            json.dumps({"apiUrl": f"{server.url}/graphql", "signInUrl": f"{idp.url}/authorize"})
        )
        # A member of staff: reads and writes any customer.
        idp.next_claims = {"sub": "agent-7", "scope": "openid customers:read customers:write"}
        staff = drive(
            browser, app, server, "full", id="c-web-1", email="ann@example.com", city="Trenton"
        )

        # The end customer c-web-1, signed in: its own record only, not c-web-2's.
        made = httpx.post(
            f"{server.url}/graphql",
            json={"query": operation("create_customer"), "variables": OTHER},
            headers={"authorization": f"Bearer {TEST_API_KEY}"},
        )
        assert made.json()["data"]["createCustomer"]["userErrors"] == []
        idp.next_claims = {
            "sub": "customer-c-web-1",
            "scope": "openid customers:self",
            "external_customer_id": "c-web-1",
        }
        own = drive(browser, app, server, "self", id="c-web-1", city="Newark", other="c-web-2")
        log = "".join(server.log)

    assert staff["who"] == "Signed in as agent-7 (openid customers:read customers:write)."
    assert staff["tokenInAddressBar"] is False
    steps = staff["steps"]
    assert steps["create"]["userErrors"] == "none"
    assert steps["read"]["shown"] == "c-web-1"
    assert steps["update"]["shown"] == "Trenton"
    # kycStatus moved from none to PENDING on the page with one request, the mutation: Apollo's
    # cache merged its answer into the customer by id.
    assert steps["update"]["kycStatus"] == "none"
    assert steps["startKyc"]["kycStatus"] == "PENDING"
    assert steps["startKyc"]["requests"] == ["StartKycVerification"]
    # Every call was a real cross-origin request, preflighted (the token is in a header) and
    # allowed; the API answered the preflights with 204 and no key.
    assert all(call["status"] == 200 and call["allowOrigin"] == app for call in staff["api"])
    assert "OPTIONS /graphql 204" in log
    assert staff["consoleErrors"] == []

    assert own["shown"]["externalCustomerId"] == "c-web-1"
    assert own["shown"]["city"] == "Newark"
    assert own["shown"]["kycStatus"] == "PENDING"
    assert own["steps"]["startKyc"]["userErrors"] == "none"
    # Another customer is, to this token, one that does not exist.
    assert own["steps"]["readOther"]["other"] == "NOT_FOUND"
    assert own["steps"]["updateOther"]["other"] == "NOT_FOUND"
    assert own["steps"]["updateOther"]["userErrors"] == "NOT_FOUND"


def test_an_origin_not_listed_is_blocked_by_the_browser(
    browser: str, database_url: str, built_app: Path, idp: IdentityProvider
) -> None:
    with (
        static_site(built_app) as allowed,
        static_site(built_app) as other,
        api_for(database_url, idp, allowed) as server,
    ):
        (built_app / "config.json").write_text(
            json.dumps({"apiUrl": f"{server.url}/graphql", "signInUrl": f"{idp.url}/authorize"})
        )
        idp.next_claims = {"sub": "agent-7", "scope": "customers:read"}
        blocked = drive(browser, other, server, "blocked", id="c-1")
        log = "".join(server.log)

    assert blocked["shown"]["error"] == "TypeError: Failed to fetch"
    assert [call.get("failure") for call in blocked["api"]] == ["net::ERR_FAILED"] * len(
        blocked["api"]
    )
    assert any("blocked by CORS policy" in line for line in blocked["consoleErrors"])
    assert "OPTIONS /graphql 400" in log  # the preflight was refused: nothing ran
    assert "POST /graphql" not in log
