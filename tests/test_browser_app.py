"""The example browser app (examples/browser-app), set up by its README's recipe (its own
`npm ci`, `npm run build`, the development identity provider, the API with the settings the
provider prints) and driven in Debian's Chromium: the sign-in form, CORS, sign-in tokens, the
normalised cache, and customers:self, as a frontend meets them."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import TEST_API_KEY
from tests.support.graphql_client import operation
from tests.support.node_tools import (
    example_app_installed,
    find_chromium,
    run_node,
    run_npm,
    save_artifact,
)
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.servers import Server, running_server

pytestmark = pytest.mark.sqlite_only  # the data paths are tested on both backends elsewhere

OTHER = {"input": {"externalCustomerId": "c-web-2", "data": {"email": "bob@example.com"}}}
APP = Path(__file__).resolve().parent.parent / "examples" / "browser-app"


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's step 3, built instead of served: the example's own packages, the types
    generated from the operations, then `vite build`."""
    find_chromium()
    app = example_app_installed()
    out = tmp_path_factory.mktemp("browser-app")
    run_npm(app, "run", "build", "--", "--outDir", str(out), "--emptyOutDir")
    return out


@dataclass(frozen=True)
class DevIdp:
    """`server.py dev-idp` running: where, and the settings it printed for the API."""

    url: str
    api_settings: dict[str, str]


@pytest.fixture(scope="module")
def dev_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevIdp]:
    """The recipe's step 1: the development identity provider, on a free loopback port."""
    key_file = tmp_path_factory.mktemp("dev-idp") / "key.pem"
    command = [sys.executable, "server.py", "dev-idp", "--port", "0", "--key-file", str(key_file)]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        printed = [process.stdout.readline() for _ in range(4)]  # the banner, then it serves
        try:
            url = re.search(r"at (http://127\.0\.0\.1:\d+)$", printed[0].strip())
            assert url, printed
            # The line to start the API with: NAME=value ... make run
            settings = dict(re.findall(r"(\w+)=(\S+)", printed[3]))
            assert printed[3].strip().endswith("make run"), printed
            yield DevIdp(url.group(1), settings)
        finally:
            process.terminate()
            process.wait(timeout=30)


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


def drive(node: str, app: str, server: Server, scenario: str, **params: Any) -> dict[str, Any]:
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
def api_for(database_url: str, idp: DevIdp, origin: str, **more: str) -> Iterator[Server]:
    """The recipe's step 2: the API with the settings the provider printed (but the app's
    origin, a port of the test's own), and `more`."""
    settings = {**idp.api_settings, "CORS_ALLOW_ORIGINS": origin, **more}
    with running_server(database_url, None, **settings) as server:
        yield server


def configure(built_app: Path, server: Server, idp: DevIdp) -> None:
    (built_app / "config.json").write_text(
        json.dumps({"apiUrl": f"{server.url}/graphql", "signInUrl": f"{idp.url}/authorize"})
    )


def test_the_app_signs_in_and_keeps_a_customer_in_its_cache(
    browser: str, database_url: str, built_app: Path, dev_idp: DevIdp
) -> None:
    with static_site(built_app) as app, api_for(database_url, dev_idp, app) as server:
        configure(built_app, server, dev_idp)
        # A member of staff, signed in through the provider's form: reads and writes any
        # customer.
        staff_sign_in = {"staff": "agent-7", "scopes": ["customers:read", "customers:write"]}
        staff = drive(
            browser,
            app,
            server,
            "full",
            id="c-web-1",
            email="ann@example.com",
            city="Trenton",
            signIn=staff_sign_in,
        )

        # The end customer c-web-1, signed in: its own record only, not c-web-2's.
        made = httpx.post(
            f"{server.url}/graphql",
            json={"query": operation("create_customer"), "variables": OTHER},
            headers={"authorization": f"Bearer {TEST_API_KEY}"},
        )
        assert made.json()["data"]["createCustomer"]["userErrors"] == []
        own = drive(
            browser,
            app,
            server,
            "self",
            id="c-web-1",
            city="Newark",
            other="c-web-2",
            signIn={"customer": "c-web-1"},
        )
        log = "".join(server.log)

    assert staff["who"] == "Signed in as agent-7 (customers:read customers:write)."
    assert staff["tokenInAddressBar"] is False
    steps = staff["steps"]
    assert steps["create"]["userErrors"] == "none"
    assert steps["read"]["shown"] == "c-web-1"
    assert steps["update"]["shown"] == "Trenton"
    # kycStatus moved from none to PENDING on the page with the mutation alone (its hash, then,
    # new to this server, the document: test_persisted_documents): Apollo's cache merged its
    # answer into the customer by id.
    assert steps["update"]["kycStatus"] == "none"
    assert steps["startKyc"]["kycStatus"] == "PENDING"
    assert steps["startKyc"]["requests"] == ["StartKycVerification"] * 2
    # Every call was a real cross-origin request, preflighted (the token is in a header) and
    # allowed; the API answered the preflights with 204 and no key.
    assert all(call["status"] == 200 and call["allowOrigin"] == app for call in staff["api"])
    assert "OPTIONS /graphql 204" in log
    assert staff["consoleErrors"] == []

    assert own["who"] == "Signed in as customer-c-web-1 (customers:self)."
    assert own["shown"]["externalCustomerId"] == "c-web-1"
    assert own["shown"]["city"] == "Newark"
    assert own["shown"]["kycStatus"] == "PENDING"
    assert own["steps"]["startKyc"]["userErrors"] == "none"
    # Another customer is, to this token, one that does not exist.
    assert own["steps"]["readOther"]["other"] == "NOT_FOUND"
    assert own["steps"]["updateOther"]["other"] == "NOT_FOUND"
    assert own["steps"]["updateOther"]["userErrors"] == "NOT_FOUND"


def test_an_origin_not_listed_is_blocked_by_the_browser(
    browser: str, database_url: str, built_app: Path, dev_idp: DevIdp
) -> None:
    with (
        static_site(built_app) as allowed,
        static_site(built_app) as other,
        api_for(database_url, dev_idp, allowed) as server,
    ):
        configure(built_app, server, dev_idp)
        sign_in = {"staff": "agent-7", "scopes": ["customers:read"]}
        blocked = drive(browser, other, server, "blocked", id="c-1", signIn=sign_in)
        log = "".join(server.log)

    assert blocked["shown"]["error"] == "TypeError: Failed to fetch"
    assert [call.get("failure") for call in blocked["api"]] == ["net::ERR_FAILED"] * len(
        blocked["api"]
    )
    assert any("blocked by CORS policy" in line for line in blocked["consoleErrors"])
    assert "OPTIONS /graphql 400" in log  # the preflight was refused: nothing ran
    assert "POST /graphql" not in log


def call(method: str, sent: str, status: int = 200, *codes: str) -> dict[str, Any]:
    return {"method": method, "sent": sent, "status": status, "codes": list(codes)}


NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"


def test_the_app_sends_hashes_and_the_document_only_when_asked(
    browser: str, database_url: str, built_app: Path, dev_idp: DevIdp
) -> None:
    """Apollo's persisted-queries link against an API that has not seen the app's documents:
    each one's hash alone, PERSISTED_QUERY_NOT_FOUND, the document with its hash (which
    registers it); from then on its hash alone, reads by GET."""
    with static_site(built_app) as app, api_for(database_url, dev_idp, app) as server:
        configure(built_app, server, dev_idp)
        sign_in = {"staff": "agent-7", "scopes": ["customers:read", "customers:write"]}
        seen = drive(browser, app, server, "persisted", id="c-p-1", email="p@example.com",
                     signIn=sign_in)  # fmt: skip

    steps = seen["steps"]
    assert steps["create"]["calls"] == [
        call("POST", "hash", 200, NOT_FOUND),
        call("POST", "document and hash"),
    ]
    # A read: its hash by GET first (a CDN may keep the answer), the document by POST.
    assert steps["read"]["calls"] == [
        call("GET", "hash", 200, NOT_FOUND),
        call("POST", "document and hash"),
    ]
    assert steps["read"]["shown"] == "c-p-1"
    assert steps["readAgain"]["calls"] == [call("GET", "hash")]
    assert steps["readOnceMore"]["calls"] == [call("GET", "hash")]
    # A document the app was not built with registers and runs as well: any document is
    # allowed (TOKEN_DOCUMENTS=any, the default).
    assert steps["adHoc"]["calls"] == [
        call("GET", "hash", 200, NOT_FOUND),
        call("POST", "document and hash"),
    ]
    assert seen["adHoc"].startswith("ran: ")
    assert seen["consoleErrors"] == []


def test_an_app_held_to_its_documents(
    browser: str, database_url: str, built_app: Path, dev_idp: DevIdp
) -> None:
    """TOKEN_DOCUMENTS=known with the app's manifest (codegen's persisted-documents.json): the
    app's documents run by their hash from the first request; one it was not built with is
    refused with UNKNOWN_DOCUMENT."""
    held = {
        "TRUSTED_DOCUMENTS_FILE": str(APP / "src" / "gql" / "persisted-documents.json"),
        "TOKEN_DOCUMENTS": "known",
    }
    with (
        static_site(built_app) as app,
        api_for(database_url, dev_idp, app, **held) as server,
    ):
        configure(built_app, server, dev_idp)
        sign_in = {"staff": "agent-7", "scopes": ["customers:read", "customers:write"]}
        seen = drive(browser, app, server, "persisted", id="c-p-2", email="q@example.com",
                     signIn=sign_in)  # fmt: skip

    steps = seen["steps"]
    assert steps["create"]["calls"] == [call("POST", "hash")]
    assert steps["read"]["calls"] == [call("GET", "hash")]
    assert steps["read"]["shown"] == "c-p-2"
    assert steps["readAgain"]["calls"] == [call("GET", "hash")]
    assert steps["adHoc"]["calls"] == [call("GET", "hash", 400, "UNKNOWN_DOCUMENT")]
    assert seen["adHoc"] == "refused: UNKNOWN_DOCUMENT"
