"""A local identity provider, for development only: sign in to a browser app without a real one.

A browser app sends its signed-in person's access token, never an API key; to try one on a
laptop a developer needs something that signs such tokens and publishes its keys.
`customer-api dev-idp` is that, and nothing more:

- it listens on a loopback address only, and refuses to start on any other: it signs in
  anyone who asks, as anyone they choose;
- `GET /authorize?redirect_uri=…&state=…` shows a form (a customer by externalCustomerId, or a
  member of staff with chosen scopes); submitting it redirects to
  `redirect_uri#access_token=…&token_type=Bearer&expires_in=…&state=…`, the implicit flow the
  example app reads (only to a loopback `redirect_uri`);
- `GET /jwks.json` publishes its public key, for the API's JWT_JWKS_URL;
- its RSA key lives in a file of its own (mode 0600, git-ignored), so tokens outlive a restart
  and `customer-api dev-token` can sign one for curl or a script with the same key.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from db.keys import ALL_SCOPES, Scope

DEFAULT_PORT = 9000
DEFAULT_AUDIENCE = "customer-api"
DEFAULT_KEY_FILE = Path(".dev-idp-key.pem")
TOKEN_LIFETIME_SECONDS = 3600
STAFF_SCOPES = sorted(ALL_SCOPES)
# Where the example app's dev server listens (examples/browser-app/vite.config.ts).
EXAMPLE_ORIGIN = "http://127.0.0.1:5173"


class NotLoopback(ValueError):
    """An address that is not this machine's own."""


def require_loopback(host: str) -> None:
    """NotLoopback unless `host` is a loopback address (or localhost)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotLoopback(
            f"{host!r} is not a loopback address: the development identity provider signs in "
            "anyone as anyone, so it listens on 127.0.0.1, ::1 or localhost only."
        )


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """The provider's RSA key from `path`, made (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} holds no RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return key


@dataclass(frozen=True)
class DevIdentityProvider:
    """Signs tokens for the API at `audience`, as the issuer at `url`."""

    url: str
    key: rsa.RSAPrivateKey
    audience: str = DEFAULT_AUDIENCE
    customer_claim: str = "external_customer_id"

    @property
    def kid(self) -> str:
        """The key's id: a digest of the public key, so a new key gets a new id."""
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "dev-" + hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, subject: str, scopes: list[str], customer: str | None = None) -> str:
        """An access token for `subject` with `scopes` (and the customer of customers:self)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "scope": " ".join(scopes),
        }
        if customer is not None:
            claims[self.customer_claim] = customer
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def api_settings(self) -> dict[str, str]:
        """The API server's settings that accept this provider's tokens."""
        return {
            "JWT_ISSUER": self.url,
            "JWT_AUDIENCE": self.audience,
            "JWT_JWKS_URL": f"{self.url}/jwks.json",
            "JWT_CUSTOMER_CLAIM": self.customer_claim,
        }


def loopback_redirect(uri: str) -> bool:
    """Whether `uri` is an http(s) address on this machine: the only place tokens go."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        require_loopback(parts.hostname)
    except NotLoopback:
        return False
    return True


def create_dev_idp_app(idp: DevIdentityProvider) -> Starlette:
    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(idp.jwks())

    async def authorize_form(request: Request) -> HTMLResponse | PlainTextResponse:
        redirect_uri = request.query_params.get("redirect_uri", "")
        if not loopback_redirect(redirect_uri):
            return PlainTextResponse("redirect_uri must be an http(s) address on 127.0.0.1.", 400)
        return HTMLResponse(_form(redirect_uri, request.query_params.get("state", "")))

    async def authorize(request: Request) -> RedirectResponse | PlainTextResponse:
        fields = parse_qs((await request.body()).decode())
        form = {name: values[-1] for name, values in fields.items()}
        redirect_uri = form.get("redirect_uri", "")
        if not loopback_redirect(redirect_uri):
            return PlainTextResponse("redirect_uri must be an http(s) address on 127.0.0.1.", 400)
        if form.get("who") == "customer":
            customer = form.get("external_customer_id", "").strip()
            if not customer:
                return PlainTextResponse("externalCustomerId: a customer needs one.", 400)
            token = idp.token(f"customer-{customer}", [Scope.CUSTOMERS_SELF.value], customer)
        else:
            scopes = [s for s in fields.get("scope", []) if s in STAFF_SCOPES]
            if not scopes:
                return PlainTextResponse("scope: choose at least one scope.", 400)
            token = idp.token(form.get("subject", "").strip() or "dev-staff", scopes)
        fragment = urlencode(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "state": form.get("state", ""),
            }
        )
        return RedirectResponse(f"{redirect_uri}#{fragment}", status_code=303)

    return Starlette(
        routes=[
            Route("/jwks.json", jwks),
            Route("/authorize", authorize_form, methods=["GET"]),
            Route("/authorize", authorize, methods=["POST"]),
        ]
    )


def _form(redirect_uri: str, state: str) -> str:
    scopes = "\n".join(
        f'<label><input type="checkbox" name="scope" value="{s}" checked> {s}</label><br>'
        for s in STAFF_SCOPES
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (development)</title>
<link rel="icon" href="data:,">
<style>body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem; max-width: 36rem; }}
fieldset {{ margin: 0 0 1rem; }}</style></head>
<body>
<h1>Sign in</h1>
<p><strong>Development identity provider:</strong> it signs in anyone, as anyone. Never use it
for real data.</p>
<form method="post" action="/authorize">
<input type="hidden" name="redirect_uri" value="{html.escape(redirect_uri)}">
<input type="hidden" name="state" value="{html.escape(state)}">
<fieldset><legend><label><input type="radio" name="who" value="customer" checked>
A customer (customers:self)</label></legend>
<label>externalCustomerId <input name="external_customer_id" id="external_customer_id"></label>
</fieldset>
<fieldset><legend><label><input type="radio" name="who" value="staff" id="staff">
A member of staff</label></legend>
<label>name <input name="subject" id="subject" value="dev-staff"></label><br>
{scopes}
</fieldset>
<button type="submit" id="idp-sign-in">Sign in</button>
</form>
</body></html>"""


def add_commands(commands: Any) -> None:
    """`dev-idp` and `dev-token` on the command line's sub-commands."""
    for name, text in (
        ("dev-idp", "serve a sign-in for browser apps, for development only (loopback only)"),
        ("dev-token", "print a token signed by the development identity provider's key"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--host", dest="idp_host", default="127.0.0.1", help="loopback only")
        command.add_argument("--port", dest="idp_port", type=int, default=DEFAULT_PORT)
        command.add_argument("--audience", default=DEFAULT_AUDIENCE, help="JWT_AUDIENCE's value")
        command.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    token = commands.choices["dev-token"]
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", help="a customer's externalCustomerId (customers:self)")
    who.add_argument("--staff", help="a member of staff's name (with --scope)")
    token.add_argument("--scope", action="append", choices=STAFF_SCOPES, help="repeatable")


def run_command(args: Any) -> int:
    """Run `dev-idp` or `dev-token`; 2 with a one-line reason for a host that is not loopback."""
    try:
        require_loopback(args.idp_host)
    except NotLoopback as error:
        print(f"customer-api: {error}", file=sys.stderr)
        return 2
    if args.command == "dev-token":
        url = _url(args.idp_host, args.idp_port)
        idp = DevIdentityProvider(url, load_key(args.key_file), args.audience)
        return _print_token(idp, args)
    # Bound first, so that port 0 (any free one) is known before the issuer's address is made.
    family = socket.AF_INET6 if ":" in args.idp_host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((args.idp_host, args.idp_port))
    url = _url(args.idp_host, listening.getsockname()[1])
    idp = DevIdentityProvider(url, load_key(args.key_file), args.audience)
    settings = " ".join(f"{name}={value}" for name, value in idp.api_settings().items())
    print(
        f"Development identity provider (signs in anyone: never for real data) at {idp.url}\n"
        f"  sign-in: {idp.url}/authorize   keys: {idp.url}/jwks.json\n"
        "Start the API so that it accepts its tokens and allows the example app's origin:\n"
        f"  {settings} CORS_ALLOW_ORIGINS={EXAMPLE_ORIGIN} make run",
        flush=True,
    )
    config = uvicorn.Config(create_dev_idp_app(idp), log_level="warning")
    uvicorn.Server(config).run(sockets=[listening])
    return 0


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _print_token(idp: DevIdentityProvider, args: Any) -> int:
    if args.customer is not None:
        print(idp.token(f"customer-{args.customer}", [Scope.CUSTOMERS_SELF.value], args.customer))
        return 0
    if not args.scope:
        print("customer-api: dev-token --staff needs at least one --scope", file=sys.stderr)
        return 2
    print(idp.token(args.staff, args.scope))
    return 0
