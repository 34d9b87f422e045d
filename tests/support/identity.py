"""A test identity provider: signing keys made for the run, its JWKS served on 127.0.0.1.

It serves `GET /jwks.json` and a sign-in that hands a browser app a token (`GET /authorize`
redirects to `redirect_uri#access_token=…&state=…`, the token made for `next_claims`). It can
be stopped (connection refused), made to answer 503, or made to hang, and it counts requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUDIENCE = "customer-api"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]


def make_key(kind: str, kid: str) -> SigningKey:
    """A new key pair of this kind (rsa, ec or ed25519) and its public JWK."""
    if kind == "rsa":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "RS256"
    elif kind == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "ES256"
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "EdDSA"
    return SigningKey(kid, alg, private, {**jwk, "kid": kid, "use": "sig", "alg": alg})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """header.payload, base64url, as a JWT signs them."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


class IdentityProvider:
    """Keys, tokens and the JWKS endpoint of one test run."""

    def __init__(self) -> None:
        self.keys = {kind: make_key(kind, f"{kind}-1") for kind in ("rsa", "ec", "ed25519")}
        self.published = list(self.keys.values())
        self.mode = "up"  # up, error (503), junk (no JWKS) or hang (no answer until released)
        self.released = threading.Event()
        self.requests: list[str] = []
        self.next_claims: dict[str, Any] = {}
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def settings(self, timeout_seconds: float = 2.0) -> dict[str, Any]:
        """Server settings (Settings field names) accepting this provider's tokens."""
        return {
            "jwt_issuer": self.issuer,
            "jwt_audience": AUDIENCE,
            "jwt_jwks_url": self.jwks_url,
            "jwt_jwks_timeout_seconds": timeout_seconds,
        }

    def environment(self, timeout_seconds: float = 2.0) -> dict[str, str]:
        """The same settings as environment variables, for a server process."""
        return {k.upper(): str(v) for k, v in self.settings(timeout_seconds).items()}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 300,
            "scope": "customers:read",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}  # None: leave the claim out

    def token(self, kind: str = "rsa", kid: str | None = None, **overrides: Any) -> str:
        """A token signed by this provider's key of that kind, with these claims changed."""
        key = self.keys[kind]
        return jwt.encode(
            self.claims(**overrides),
            key.private,
            algorithm=key.alg,
            headers={"kid": kid or key.kid},
        )

    def alg_none_token(self, **overrides: Any) -> str:
        header = {"alg": "none", "typ": "JWT", "kid": self.keys["rsa"].kid}
        return unsigned(header, self.claims(**overrides)) + "."

    def hs256_with_public_key(self, **overrides: Any) -> str:
        """The classic confusion attack: HMAC-signed with the RSA public key as the secret."""
        public = self.keys["rsa"].private.public_key()
        secret = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = unsigned(
            {"alg": "HS256", "typ": "JWT", "kid": self.keys["rsa"].kid}, self.claims(**overrides)
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(signature)}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self.published]}

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.requests.append(self.path)
                path = urlsplit(self.path)
                if path.path == "/authorize":
                    return self.authorize(parse_qs(path.query))
                if path.path != "/jwks.json":
                    return self.answer(404, b"{}")
                if provider.mode == "hang":
                    provider.released.wait(timeout=60)
                    return None
                if provider.mode == "error":
                    return self.answer(503, b"{}")
                if provider.mode == "junk":
                    return self.answer(200, b'{"keys": "none"}')
                return self.answer(200, json.dumps(provider.jwks()).encode())

            def authorize(self, query: dict[str, list[str]]) -> None:
                token = provider.token(**provider.next_claims)
                fragment = urlencode({"access_token": token, "state": query["state"][0]})
                self.send_response(302)
                self.send_header("location", f"{query['redirect_uri'][0]}#{fragment}")
                self.send_header("content-length", "0")
                self.end_headers()

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read `requests`

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        if self.server is not None:
            self.released.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self.released.clear()

    def jwks_fetches(self) -> int:
        return sum(1 for path in self.requests if path.startswith("/jwks.json"))


@contextmanager
def identity_provider() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
