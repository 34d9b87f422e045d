"""The development identity provider (web/dev_idp.py): loopback only, tokens only to loopback
pages, signed by the key it publishes. tests/test_browser_app.py signs in through it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from db.keys import Scope
from tests.support.paths import ROOT
from web.dev_idp import DevIdentityProvider, create_dev_idp_app, load_key

URL = "http://127.0.0.1:9000"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_it_refuses_to_listen_beyond_loopback(host: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "server.py", "dev-idp", "--host", host, "--key-file", str(tmp_path / "k")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "is not a loopback address" in line
    assert not (tmp_path / "k").exists()  # refused before anything was made


@pytest.fixture
def idp(tmp_path: Path) -> DevIdentityProvider:
    return DevIdentityProvider(URL, load_key(tmp_path / "key.pem"))


async def sign_in(idp: DevIdentityProvider, form: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_dev_idp_app(idp))
    async with httpx.AsyncClient(transport=transport, base_url=URL) as client:
        return await client.post("/authorize", data=form)


async def test_a_customer_signs_in_with_a_signed_token(idp: DevIdentityProvider) -> None:
    back = "http://127.0.0.1:5173/"
    answer = await sign_in(
        idp,
        {"redirect_uri": back, "state": "s-1", "who": "customer", "external_customer_id": "c-1"},
    )
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location._replace(fragment="").geturl() == back
    fragment = {k: v for k, [v] in parse_qs(location.fragment).items()}
    assert fragment["state"] == "s-1"
    assert fragment["token_type"] == "Bearer"

    # Signed by the key it publishes, for this API, as the claims the API reads.
    [key] = jwt.PyJWKSet.from_dict(idp.jwks()).keys
    claims = jwt.decode(
        fragment["access_token"], key, algorithms=["RS256"], audience="customer-api", issuer=URL
    )
    assert claims["scope"] == Scope.CUSTOMERS_SELF.value
    assert claims["external_customer_id"] == "c-1"


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/", "http://10.0.0.1/", "javascript:alert(1)", "", "//127.0.0.1/"],
)
async def test_tokens_go_to_loopback_pages_only(
    idp: DevIdentityProvider, redirect_uri: str
) -> None:
    form = {"redirect_uri": redirect_uri, "state": "s", "who": "staff", "scope": "customers:read"}
    answer = await sign_in(idp, form)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    transport = httpx.ASGITransport(app=create_dev_idp_app(idp))
    async with httpx.AsyncClient(transport=transport, base_url=URL) as client:
        shown = await client.get("/authorize", params={"redirect_uri": redirect_uri})
    assert shown.status_code == 400


async def test_the_key_outlives_a_restart(tmp_path: Path) -> None:
    first = DevIdentityProvider(URL, load_key(tmp_path / "key.pem"))
    again = DevIdentityProvider(URL, load_key(tmp_path / "key.pem"))
    assert first.jwks() == again.jwks()
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
