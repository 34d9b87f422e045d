"""Who a request is: the bearer credential in its headers, checked before any body is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from starlette.responses import JSONResponse, Response

from db import keys
from db.engine import Database
from web.tokens import TokenRefused, TokenVerifier, looks_like_jwt

UNAUTHENTICATED = "UNAUTHENTICATED"


class Unauthenticated(Exception):
    """No key, or one that is unknown or revoked: a 401, before any GraphQL runs."""


def unauthenticated(message: str) -> Response:
    """The 401 answer: a GraphQL-shaped error that says why, and the scheme to use."""
    body = {"errors": [{"message": message, "extensions": {"code": UNAUTHENTICATED}}]}
    return JSONResponse(
        body,
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="customer-api"'},
        media_type="application/json",
    )


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of `Authorization: Bearer <token>`; Unauthenticated when there is none."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "Send your API key as the header 'Authorization: Bearer <key>'. "
            "(python server.py keys create makes one.)"
        )
    return token


async def authenticate(
    db: Database,
    headers: Mapping[str, str],
    clock: Callable[[], datetime],
    tokens: TokenVerifier | None = None,
) -> keys.Principal:
    """The key's or the identity provider's token's principal; Unauthenticated for a missing,
    unknown or revoked key and for a token that fails a check (tokens.KeysUnavailable when
    the provider's keys cannot be had)."""
    token = bearer_token(headers)
    if looks_like_jwt(token):
        return await token_principal(token, tokens)
    async with db.read() as session:
        row = await keys.find_active_key(session, token)
    if row is None or row.id is None:
        raise Unauthenticated("This API key is unknown or revoked.")
    now = clock()
    if keys.needs_touch(row, now):
        async with db.write() as session:
            await keys.touch(session, row.id, now)
    return keys.principal_of(row)


async def token_principal(token: str, tokens: TokenVerifier | None) -> keys.Principal:
    """The principal of an identity provider's token, when the server accepts them."""
    if tokens is None:
        raise Unauthenticated(
            "This server accepts API keys only: it is not set up for identity-provider tokens "
            "(JWT_ISSUER, JWT_AUDIENCE, JWT_JWKS_URL)."
        )
    try:
        return await tokens.principal(token)
    except TokenRefused as refused:
        raise Unauthenticated(str(refused)) from None
