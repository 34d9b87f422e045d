"""Who a request is: the bearer credential in its headers, checked before any body is read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from starlette.responses import JSONResponse, Response

from db import keys
from db.engine import Database
from web.tokens import TokenRefused, TokenVerifier, looks_like_jwt

logger = logging.getLogger("customer_api.auth")

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
            "(An operator makes one with: customer-api keys create --name NAME --scope SCOPE)"
        )
    return token


@dataclass(frozen=True)
class _Cached:
    principal: keys.Principal
    key_id: int
    until: float  # monotonic time after which the key is read from the database again


class ApiKeys:
    """API keys checked against the database, their principals held in memory for a while.

    A principal is reused for at most `cache_seconds`, then its key is read again: that is
    how long a revocation (from any process, on any replica) can take to be honoured. The
    last-used stamp is written in the background, at most once a minute per key: a stamp that
    fails or waits (a full disk, a held write lock, a read-only replica) never touches the
    request.
    """

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        size: int = 10_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.size = size
        self.cache: dict[str, _Cached] = {}  # by the key's hash, never the key itself
        # Key id: when (on the monotonic clock) its last-used stamp is next due, so that a
        # request reads no wall clock for it but once a minute.
        self.stamp_due: dict[int, float] = {}
        self.stamps: set[asyncio.Task[None]] = set()
        # A read of a key in progress, by its hash: the requests that find its entry expired
        # together share it (32 concurrent clients of one key each read it before, every
        # `cache_seconds`: that many reads at once, and a long tail while they ran).
        self.loading: dict[str, asyncio.Future[_Cached]] = {}

    async def principal(self, key: str) -> keys.Principal:
        """The key's principal; Unauthenticated for an unknown or revoked key."""
        digest = keys.hash_key(key)
        now = self.monotonic()
        cached = self.cache.get(digest)
        if cached is None or cached.until <= now:
            cached = await self._load_once(digest, now)
        if now >= self.stamp_due.get(cached.key_id, now):
            self._stamp(cached, now)
        return cached.principal

    async def _load_once(self, digest: str, now: float) -> _Cached:
        """The key read once for every request that waits for it meanwhile; a request
        cancelled while it waits leaves the read to the others."""
        loading = self.loading.get(digest)
        if loading is None:
            loading = self.loading[digest] = asyncio.ensure_future(self._load(digest, now))
            loading.add_done_callback(lambda done: self._loaded(digest, done))
        return await asyncio.shield(loading)

    def _loaded(self, digest: str, done: asyncio.Future[_Cached]) -> None:
        if self.loading.get(digest) is done:
            del self.loading[digest]
        if not done.cancelled():
            done.exception()  # read here: every waiter may have gone (it still raises to each)

    async def _load(self, digest: str, now: float) -> _Cached:
        async with self.db.read() as session:
            row = await keys.find_active_key_by_hash(session, digest)
        if row is None or row.id is None:
            self.cache.pop(digest, None)
            raise Unauthenticated("This API key is unknown or revoked.")
        if row.last_used_at is not None and row.id not in self.stamp_due:
            fresh_for = keys.LAST_USED_PRECISION - (self.clock() - row.last_used_at)
            self.stamp_due[row.id] = now + fresh_for.total_seconds()
        cached = _Cached(keys.principal_of(row), row.id, now + self.cache_seconds)
        if self.cache_seconds > 0:
            if len(self.cache) >= self.size:  # full: drop what has expired, else everything
                self.cache = {k: v for k, v in self.cache.items() if v.until > now}
                if len(self.cache) >= self.size:
                    self.cache.clear()
            self.cache[digest] = cached
        return cached

    def _stamp(self, cached: _Cached, monotonic_now: float) -> None:
        # Asked for once a minute, even when it fails.
        self.stamp_due[cached.key_id] = monotonic_now + keys.LAST_USED_PRECISION.total_seconds()
        task = asyncio.create_task(self._write_stamp(cached, self.clock()))
        self.stamps.add(task)
        task.add_done_callback(self.stamps.discard)

    async def _write_stamp(self, cached: _Cached, now: datetime) -> None:
        try:
            async with self.db.write() as session:
                await keys.touch(session, cached.key_id, now)
        except Exception as error:
            logger.warning(
                "could not record the use of the key %r: %s", cached.principal.name,
                type(error).__name__,
            )  # fmt: skip

    async def close(self, wait: float = 1.0) -> None:
        """At shutdown: let running stamps end for `wait` seconds, then cancel the rest (a
        missed stamp loses nothing)."""
        if self.stamps:
            await asyncio.wait(list(self.stamps), timeout=wait)
        for task in list(self.stamps):
            task.cancel()
        await asyncio.gather(*self.stamps, return_exceptions=True)


async def authenticate(
    api_keys: ApiKeys,
    headers: Mapping[str, str],
    tokens: TokenVerifier | None = None,
) -> keys.Principal:
    """The key's or the identity provider's token's principal; Unauthenticated for a missing,
    unknown or revoked key and for a token that fails a check (tokens.KeysUnavailable when
    the provider's keys cannot be had)."""
    token = bearer_token(headers)
    if looks_like_jwt(token):
        return await token_principal(token, tokens)
    return await api_keys.principal(token)


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
