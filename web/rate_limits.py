"""Rate limits per principal: a leaky bucket of cost points for each API key and token subject.

Each request's estimated cost (schema/analysis.py, the same figure the per-request MAX_COST
checks) is drawn from its principal's bucket before it runs: a bucket holds `size` points
(RATE_LIMIT_MAX_COST, or the key's own maximum cost) and regains `rate` points a second
(RATE_LIMIT_RESTORE_RATE, or the key's own), up to its size. A request that does not fit is
refused unrun with THROTTLED and a Retry-After of the seconds until it would fit; one that
costs more than its bucket can ever hold, with MAX_COST_EXCEEDED. Nothing is drawn for a
request that the executors will refuse anyway (it does not parse or validate, a field it
asks for is forbidden, it is past MAX_COST): it costs nothing.

A principal's bucket is named as events name actors (`key:<name>`, `token:<iss>#<sub>`), so
two tokens of one subject share one bucket. Time is the app's clock (the tests move it by
hand), read once per draw.

The buckets live in this process (`MemoryBuckets`), or in Redis for every process and server
to share (`RedisBuckets`: one Lua script per draw, atomic in Redis). A draw that Redis does
not answer within RATE_LIMIT_REDIS_TIMEOUT_SECONDS fails open: the request runs unmetered
(its throttleStatus is null), and so do the draws of the next second without asking Redis;
`rate_limit_unmetered` counts each, and a WARNING says so at most once a minute.

Every answer of a request that was drawn from carries `extensions.cost` in Shopify's shape
(schema/analysis.py's `cost_extension`); its `throttleStatus` is made here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import redis.asyncio
from redis.exceptions import RedisError
from starlette.responses import Response

from db.keys import Principal
from schema.analysis import Admission, Analyser, admission, cost_extension
from web import metrics
from web.refusals import GRAPHQL_RESPONSE

logger = logging.getLogger("customer_api.rate_limits")

THROTTLED = "THROTTLED"
MAX_COST_EXCEEDED = "MAX_COST_EXCEEDED"
WARN_EVERY_SECONDS = 60.0
# After Redis failed to answer, draws skip it for this long (running unmetered at once), so
# an outage adds its timeout to one request a second per process, not to every request.
RETRY_REDIS_SECONDS = 1.0
MEMORY_ENTRIES = 100_000  # buckets one process keeps before it forgets the full ones


@dataclass(frozen=True)
class Bucket:
    """A bucket's shape: how many points it holds, and how many a second it regains."""

    size: int
    rate: float


class Buckets(Protocol):
    async def draw(
        self, name: str, bucket: Bucket, cost: int, now: float
    ) -> tuple[bool, float] | None:
        """Take `cost` points from the bucket `name` if it holds them: whether it did, and
        the points left; None when the store cannot say (the request runs unmetered)."""

    async def close(self) -> None:
        """Let go of connections."""


class MemoryBuckets:
    """The buckets of this process: by name, the level and when it was last worked out."""

    def __init__(self, entries: int = MEMORY_ENTRIES) -> None:
        self.entries = entries
        self.levels: dict[str, tuple[float, float, float]] = {}  # level, at, full again at

    async def draw(self, name: str, bucket: Bucket, cost: int, now: float) -> tuple[bool, float]:
        level, at, _ = self.levels.get(name, (bucket.size, now, now))
        if now > at:
            level, at = level + (now - at) * bucket.rate, now
        level = min(level, bucket.size)  # a key's bucket may have shrunk since
        admitted = cost <= level
        if admitted:
            level -= cost
        if name not in self.levels and len(self.levels) >= self.entries:
            # Full buckets are what a new one would be: forgetting them changes nothing.
            self.levels = {k: v for k, v in self.levels.items() if v[2] > now}
            if len(self.levels) >= self.entries:
                self.levels.clear()  # never past the bound: errs towards the clients
        self.levels[name] = (level, at, at + (bucket.size - level) / bucket.rate)
        return admitted, level

    async def close(self) -> None:
        return None


# KEYS[1]: the bucket; ARGV: its size, its rate, the cost, now (seconds). Returns whether the
# cost was taken, and the level after, as a string (Redis would truncate a number).
DRAW_SCRIPT = """
local size = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(state[1])
local at = tonumber(state[2])
if level == nil or at == nil then
  level = size
  at = now
end
if now > at then
  level = level + (now - at) * rate
  at = now
end
if level > size then
  level = size
end
local admitted = 0
if cost <= level then
  level = level - cost
  admitted = 1
end
local shown = string.format('%.17g', level)
redis.call('HSET', KEYS[1], 'level', shown, 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], math.ceil((size - level) / rate * 1000) + 1000)
return {admitted, shown}
"""


class RedisBuckets:
    """The buckets in Redis, shared by every process that uses the same URL and prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.script = self.client.register_script(DRAW_SCRIPT)
        self.prefix = prefix
        self.timeout = timeout
        self.monotonic = monotonic
        self.warn_due = 0.0
        self.unmetered = 0  # since the last warning
        self.retry_at = 0.0  # on the monotonic clock: when to ask Redis again after a failure

    async def draw(
        self, name: str, bucket: Bucket, cost: int, now: float
    ) -> tuple[bool, float] | None:
        if self.retry_at and self.monotonic() < self.retry_at:
            self.count_unmetered()
            return None
        try:
            async with asyncio.timeout(self.timeout):
                admitted, level = await self.script(
                    keys=[self.prefix + name],
                    args=[bucket.size, repr(float(bucket.rate)), cost, repr(now)],
                )
        except (RedisError, OSError, TimeoutError) as error:
            self.retry_at = self.monotonic() + RETRY_REDIS_SECONDS
            self.count_unmetered(error)
            return None
        self.retry_at = 0.0
        return bool(admitted), float(level)

    def count_unmetered(self, error: Exception | None = None) -> None:
        metrics.RATE_LIMIT_UNMETERED.inc()
        self.unmetered += 1
        now = self.monotonic()
        if error is not None and now >= self.warn_due:
            self.warn_due = now + WARN_EVERY_SECONDS
            logger.warning(
                "Redis did not answer a rate-limit draw (%s): %d request(s) ran unmetered "
                "since the last warning; this is said at most once a minute",
                type(error).__name__,
                self.unmetered,
            )
            self.unmetered = 0

    async def close(self) -> None:
        await self.client.aclose()


class Throttled(Exception):
    """A request refused before it ran: its bucket cannot pay for it (yet, or ever)."""

    def __init__(
        self,
        code: str,
        message: str,
        cost: int,
        status: dict[str, Any] | None,
        retry_after: int | None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.cost = cost
        self.status = status
        self.retry_after = retry_after

    def response(self, graphql_response: bool) -> Response:
        """The refusal: a GraphQL error with the code and the cost extension; 429 (or 400 for
        MAX_COST_EXCEEDED) for clients that accept application/graphql-response+json, else
        the 200 that application/json clients read GraphQL errors in (as for the view's
        other GraphQL errors)."""
        body = {
            "errors": [{"message": str(self), "extensions": {"code": self.code}}],
            "extensions": {"cost": cost_extension(self.cost, None, self.status)},
        }
        headers = {} if self.retry_after is None else {"retry-after": str(self.retry_after)}
        if graphql_response:
            status, media_type = (429 if self.retry_after else 400), GRAPHQL_RESPONSE
        else:
            status, media_type = 200, "application/json"
        return Response(orjson.dumps(body), status, headers, media_type)


class RateLimiter:
    """Draws each request's cost from its principal's bucket."""

    def __init__(
        self,
        buckets: Buckets,
        default: Bucket,
        analyser: Analyser,
        clock: Callable[[], datetime],
    ) -> None:
        self.buckets = buckets
        self.default = default
        self.analyser = analyser
        self.clock = clock

    def bucket_of(self, principal: Principal) -> Bucket:
        """The principal's bucket: its key's own limits where it has them, else the default."""
        if not principal.max_cost and not principal.restore_rate:
            return self.default  # nearly every principal's: not made anew for each request
        size = principal.max_cost or self.default.size
        rate = principal.restore_rate or self.default.rate
        return Bucket(size, rate)

    async def admit(
        self,
        principal: Principal,
        text: object,
        name: object,
        variables: object,
    ) -> dict[str, Any] | None:
        """The principal's throttleStatus after the operation's cost was drawn (None when
        unmetered); Throttled when the bucket cannot pay for it."""
        admitted = admission(self.analyser, principal.scopes, text, name, variables)
        return await self.draw(principal, cost_of(admitted))

    async def draw(self, principal: Principal, cost: int) -> dict[str, Any] | None:
        """The principal's throttleStatus after `cost` was drawn (None when unmetered);
        Throttled when the bucket cannot pay for it."""
        bucket = self.bucket_of(principal)
        now = self.clock().timestamp()
        if cost > bucket.size:
            drawn = await self.buckets.draw(principal.actor, bucket, 0, now)  # where it stands
            status = None if drawn is None else throttle_status(bucket, drawn[1])
            raise Throttled(
                MAX_COST_EXCEEDED,
                f"This request costs {cost} points, more than its bucket ever holds "
                f"({bucket.size}): it can never run. Ask for less (smaller pages, fewer fields).",
                cost,
                status,
                None,
            )
        drawn = await self.buckets.draw(principal.actor, bucket, cost, now)
        if drawn is None:
            return None
        admitted, level = drawn
        status = throttle_status(bucket, level)
        if not admitted:
            wait = max(1, math.ceil((cost - level) / bucket.rate))
            raise Throttled(
                THROTTLED,
                f"Throttled: this request costs {cost} points and its bucket holds "
                f"{math.floor(level)}, regaining {bucket.rate:g} a second; retry in {wait} s "
                "(Retry-After), and pace requests by extensions.cost.throttleStatus.",
                cost,
                status,
                wait,
            )
        return status

    async def close(self) -> None:
        await self.buckets.close()


def throttle_status(bucket: Bucket, level: float) -> dict[str, Any]:
    """Shopify's throttleStatus: the bucket's size, the whole points in it, its rate."""
    return {
        "maximumAvailable": bucket.size,
        "currentlyAvailable": math.floor(level),
        "restoreRate": float(bucket.rate),
    }


def cost_of(admitted: Admission | None) -> int:
    """What a request draws: its estimated cost, or nothing when the executors will refuse it
    (it does not parse or validate, asks for a forbidden field, or is past MAX_COST)."""
    return 0 if admitted is None or admitted.cost is None else admitted.cost


def rate_limiter(
    analyser: Analyser,
    clock: Callable[[], datetime],
    *,
    max_cost: int,
    restore_rate: float,
    redis_url: str | None,
    redis_prefix: str,
    redis_timeout: float,
) -> RateLimiter:
    """The limiter the settings describe: buckets in Redis when a URL is given, else here."""
    buckets: Buckets = (
        MemoryBuckets()
        if redis_url is None
        else RedisBuckets(redis_url, prefix=redis_prefix, timeout=redis_timeout)
    )
    return RateLimiter(buckets, Bucket(max_cost, restore_rate), analyser, clock)
