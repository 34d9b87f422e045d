"""Sign-in tokens from an identity provider: JWTs checked against the provider's published keys.

A browser app cannot hold an API key (every user would get it), so it sends the access token
its identity provider issued to the signed-in person: `Authorization: Bearer <JWT>`. PyJWT
checks the signature and the claims; this module only chooses what to accept and keeps the
provider's keys (its JWKS) at hand.

- Only asymmetric signatures (RS256, ES256, EdDSA), each with the key type it belongs to:
  `alg: none` and HS256 are refused before any key is looked at, so a token "signed" with the
  provider's public key as an HMAC secret goes nowhere.
- The header is checked before anything else: a JSON object with a string `alg` and `kid`, and
  no `crit` or `b64` extension. Whatever is malformed in it is a TokenRefused (a 401 over
  HTTP, a 4401 close over WebSocket) saying which field, never an error of PyJWT's own.
- `exp`, `iss`, `aud` and `sub` are required, `nbf` and `iat` checked when present, each with
  the leeway setting for clocks that differ.
- The JWKS is fetched with a timeout, one fetch at a time, and kept; a token naming a key id
  that is not in it makes one fresh fetch, at most once a minute (providers rotate keys, and a
  stream of made-up ids must not become a stream of fetches). A provider that cannot be
  reached answers 503 within the timeout; the next request after it is back fetches again.
- Once the keys are older than their refresh age they are fetched again in the background
  (stale-while-revalidate): a token whose key is in hand is checked at once, so a provider
  that hangs or is down delays no such request; a key it withdrew stops working when that
  refresh lands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.utils import base64url_decode
from starlette.responses import JSONResponse, Response

from db import events
from db.keys import ALL_SCOPES, Principal, Scope

logger = logging.getLogger("customer_api.tokens")

# The algorithm each key type signs with; a token must use its key's.
ALGORITHMS = ("RS256", "ES256", "EdDSA")
# A key id missing from the cached JWKS makes a fresh fetch at most this often.
MIN_REFRESH_SECONDS = 60.0
# The JWKS is fetched again, in the background, once it is this old (by default; the setting
# JWT_JWKS_MAX_AGE_SECONDS), so a key the provider withdrew stops working; when that fetch
# fails the keys in hand are kept.
MAX_AGE_SECONDS = 600.0
# After a failed fetch, requests in this window get 503 at once instead of trying again.
RETRY_AFTER_FAILURE_SECONDS = 1.0
TOKEN_SCOPES = ALL_SCOPES | {Scope.CUSTOMERS_SELF}
# A value quoted from a token in a refusal is cut to this many characters.
SHOWN_CHARACTERS = 40


class TokenRefused(Exception):
    """The token is not one to accept; the message says which check it failed (a 401)."""


class KeysUnavailable(Exception):
    """The provider's keys could not be fetched, so no token can be checked now (a 503)."""

    def response(self) -> Response:
        """503, GraphQL-shaped like the 401, with a hint to try again shortly."""
        message = (
            "The identity provider's signing keys could not be fetched "
            f"({self}), so the token cannot be checked now; nothing ran. Try again shortly."
        )
        body = {"errors": [{"message": message, "extensions": {"code": "UNAVAILABLE"}}]}
        return JSONResponse(
            body,
            status_code=503,
            headers={"retry-after": str(int(RETRY_AFTER_FAILURE_SECONDS))},
            media_type="application/json",
        )


@dataclass(frozen=True)
class TokenSettings:
    """Which identity provider's tokens to accept, and how strictly."""

    issuer: str
    audience: str
    jwks_url: str
    leeway_seconds: float = 30.0
    jwks_timeout_seconds: float = 5.0
    customer_claim: str = "external_customer_id"
    jwks_max_age_seconds: float = MAX_AGE_SECONDS


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts separated by dots (an API key has none)."""
    return token.count(".") == 2


class Jwks:
    """The provider's signing keys by key id, fetched when needed, kept, and refreshed in the
    background once they are `max_age_seconds` old."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.monotonic = monotonic
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at: float | None = None  # the last successful fetch
        self.failed_at: float | None = None  # the last failed one, cleared by a success
        self.failure = ""
        self.fetches = 0  # attempts, for the tests that hold the refresh to its limit
        self._fetching: asyncio.Task[None] | None = None  # one at a time; requests share it

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id; None if the provider has no such key.

        A key in hand is answered at once, also when the set is old enough to be fetched
        again: that refresh runs in the background (stale-while-revalidate), so a provider
        that hangs delays no token the keys in hand can check. A key id not in hand waits for
        a fetch: the one running, or a new one (the first, or at most once a minute).
        Raises KeysUnavailable when a fetch was needed and failed."""
        if kid in self.keys:
            if self._stale():
                self._start_fetch()
            return self.keys[kid]
        fetch = self._fetching
        if fetch is None and self._may_fetch_for_unknown_kid():
            fetch = self._start_fetch()
        if fetch is not None:
            await asyncio.shield(fetch)  # a request that gives up leaves it to the others
        if kid in self.keys:
            return self.keys[kid]
        if self.fetched_at is None or (self.failed_at or 0) > self.fetched_at:
            raise KeysUnavailable(self.failure)
        return None

    async def close(self) -> None:
        """At shutdown: stop a fetch in flight (nobody is left to need its keys)."""
        if self._fetching is not None:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)

    def _stale(self) -> bool:
        return self.fetched_at is None or self.monotonic() - self.fetched_at >= self.max_age_seconds

    def _may_fetch_for_unknown_kid(self) -> bool:
        if self.fetched_at is None:
            return True
        return self.monotonic() - self.fetched_at >= self.min_refresh_seconds

    def _start_fetch(self) -> asyncio.Task[None] | None:
        """The fetch now running, started unless one runs or one failed a moment ago."""
        failed_at = self.failed_at
        if self._fetching is None and (
            failed_at is None or self.monotonic() - failed_at >= RETRY_AFTER_FAILURE_SECONDS
        ):
            self._fetching = asyncio.create_task(self._fetch(), name="the JWKS fetch")
            self._fetching.add_done_callback(self._fetched)
        return self._fetching

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetching = None
        if not task.cancelled() and (error := task.exception()) is not None:
            # Retrieved here: a refresh nobody waits for must not fail silently.
            logger.error("the JWKS fetch failed unexpectedly", exc_info=error)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):  # the whole fetch, not each read
                # No proxies from the environment and no redirects: the operator named the URL.
                async with httpx.AsyncClient(
                    timeout=self.timeout_seconds, trust_env=False, follow_redirects=False
                ) as client:
                    response = await client.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (TimeoutError, httpx.HTTPError, ValueError, RecursionError) as error:
            self.failed_at = self.monotonic()
            self.failure = describe(error, self.timeout_seconds)
            logger.warning("the identity provider's keys could not be fetched: %s", self.failure)
            return
        self.keys = keys
        self.fetched_at = self.monotonic()
        self.failed_at = None


def describe(error: Exception, timeout_seconds: float) -> str:
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return f"no answer within {timeout_seconds:g} s"
    if isinstance(error, httpx.HTTPStatusError):
        return f"it answered {error.response.status_code}"
    if isinstance(error, httpx.HTTPError):
        return f"it could not be reached ({type(error).__name__})"
    return f"its answer is not a JWKS ({error})"


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS document with a key id and an accepted algorithm."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("no 'keys' list")
    found: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve not accepted here: its tokens get "unknown key"
        if isinstance(kid, str) and key.algorithm_name in ALGORITHMS:
            found[kid] = key
    return found


class TokenVerifier:
    """Turns a bearer JWT into the principal it stands for, or says why it will not."""

    def __init__(self, settings: TokenSettings, jwks: Jwks | None = None) -> None:
        self.settings = settings
        self.jwks = jwks or Jwks(
            settings.jwks_url,
            settings.jwks_timeout_seconds,
            max_age_seconds=settings.jwks_max_age_seconds,
        )

    async def close(self) -> None:
        await self.jwks.close()

    async def principal(self, token: str) -> Principal:
        """The token's principal; TokenRefused (401) or KeysUnavailable (503) otherwise."""
        kid = signing_key_id(token)
        key = await self.jwks.key(kid)
        if key is None:
            raise TokenRefused(
                f"The token's signing key {shown(kid)} is not one of the identity provider's keys."
            )
        return self._principal(self._claims(token, key))

    def _claims(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        settings = self.settings
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],  # the key's own: no switching algorithms
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("The token has expired (its 'exp' has passed).") from None
        except jwt.ImmatureSignatureError as error:
            # PyJWT raises it for an 'iat' in the future as well as for an 'nbf'.
            claim = "iat" if "(iat)" in str(error) else "nbf"
            raise TokenRefused(f"The token is not valid yet (its {claim!r} is to come).") from None
        except jwt.InvalidIssuedAtError:
            raise TokenRefused("The token's 'iat' claim is not a number.") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(
                f"The token's issuer ('iss') is not {settings.issuer!r}, the one this server "
                "accepts."
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"The token's audience ('aud') is not {settings.audience!r}: it was issued "
                "for another API."
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRefused(f"The token has no {error.claim!r} claim.") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefused(
                f"The token's 'alg' is not {key.algorithm_name}, the algorithm of its key."
            ) from None
        except jwt.InvalidSignatureError:
            raise TokenRefused(
                "The token's signature does not match: its header or claims were changed "
                "after signing, or another key signed it."
            ) from None
        except jwt.InvalidTokenError as error:
            raise TokenRefused(f"The token is not valid: {error}.") from None

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise TokenRefused("The token's 'sub' claim is not a string.")
        if not sub.isprintable():  # NUL and lone surrogates cannot be stored; no invisible names
            raise TokenRefused("The token's 'sub' claim has a character that is not printable.")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenRefused("The token's 'scope' claim is not a space-separated string.")
        # Scopes of other APIs ("openid", "profile") are no business of this one.
        scopes = frozenset(Scope(s) for s in scope.split() if s in TOKEN_SCOPES)
        customer = None
        if Scope.CUSTOMERS_SELF in scopes:
            claim = self.settings.customer_claim
            customer = claims.get(claim)
            if not isinstance(customer, str) or not customer:
                raise TokenRefused(
                    f"The token has the {Scope.CUSTOMERS_SELF} scope but no {claim!r} claim "
                    "naming the customer."
                )
        principal = Principal(sub, scopes, customer, issuer=self.settings.issuer)
        # The events of its changes name it as their actor, with the issuer: it must fit whole.
        room = events.ACTOR_CHARACTERS - (len(principal.actor) - len(sub))
        if len(sub) > room:
            raise TokenRefused(f"The token's 'sub' claim is longer than {room} characters.")
        return principal


def signing_key_id(token: str) -> str:
    """The key id of a token whose header this server accepts; TokenRefused naming the header
    field otherwise, before any key is looked at.

    The header is read here, not by PyJWT, so that every malformed one is a refusal that says
    what is wrong: PyJWT raises its own errors for some (a 'kid' that is not a string, any
    'crit') and takes others for ones it supports ('b64')."""
    try:
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except (ValueError, RecursionError):  # not ASCII, not base64url, not UTF-8 JSON, too deep
        raise TokenRefused("The token is not a well-formed JWT: its header is not JSON.") from None
    if not isinstance(header, dict):
        raise TokenRefused("The token is not a well-formed JWT: its header is not an object.")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise TokenRefused(
            f"The token's 'alg' header says it is signed with {shown(alg)}; only "
            f"{', '.join(ALGORITHMS)} are accepted."
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused(
            "The token names no signing key: its 'kid' header must be a non-empty string."
        )
    for extension in ("crit", "b64"):  # RFC 7515 4.1.11, RFC 7797: none is supported here
        if extension in header:
            raise TokenRefused(
                f"The token's header has {extension!r}, an extension this server does not support."
            )
    return kid


def shown(value: object) -> str:
    """A value from a token, for a message: its repr, cut short (a token may be long)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"
