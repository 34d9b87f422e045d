"""Webhook endpoints and their deliveries: the data side of sending the feed to URLs.

- **Secrets** (`whsec_` + base64 of 32 random bytes) are shown once and stored encrypted
  with AES-GCM under WEBHOOK_SECRET_KEY (the server must sign, so a hash would not do).
- **Targets**: `check_url` refuses what is not https (http only to a loopback address where
  private targets are allowed) and any host that resolves to an internal address. It runs
  when an endpoint is made or changed and again before every attempt, which connects to the
  address it checked, so DNS cannot be re-pointed in between.
- **Deliveries**: `enqueue` makes one for each new event an enabled endpoint wants (each
  endpoint remembers the last event it has seen: `enqueued_through`); `claim` takes the
  oldest pending delivery of each endpoint that is due (read from each endpoint down an
  index, so its cost does not grow with the backlog) and leases it (its next attempt moves
  `LEASE` ahead, committed before the request is sent), so no two workers send it at once
  (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite); a worker that dies
  mid-attempt leaves a lease that runs out, and the delivery is sent again, with the same
  webhook-id. One endpoint's next delivery waits until the one before it succeeded or failed
  for good, so an endpoint gets the feed's order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from db import events
from db.driver import PerDialect
from db.engine import Database
from db.models import (
    CustomerEvent,
    DeliveryStatus,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from db.pages import Direction, Ordering, Page, fetch_page
from db.rules import Code, Problem

SECRET_PREFIX = "whsec_"
LEASE = timedelta(seconds=60)  # longer than an attempt may take
# Standard Webhooks' suggested schedule: the delays before the 2nd, 3rd, ... attempt.
RETRY_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 3600, 6 * 3600, 24 * 3600)
MAX_URL = 2048
RESOLVE_SECONDS = 5.0  # the longest a webhook URL's DNS lookup may take
_URL_FIELD = "url"
_ENCRYPTED = "v1:"

Resolve = Callable[[str, int], Awaitable[list[str]]]


class SecretBox:
    """Encrypts signing secrets at rest with AES-GCM (a fresh 96-bit nonce for each)."""

    def __init__(self, key: str) -> None:
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "WEBHOOK_SECRET_KEY must be 32 random bytes in base64 "
                '(python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())")'
            )
        self._aead = AESGCM(raw)

    def seal(self, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), b"webhook-secret")
        return _ENCRYPTED + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str) -> str:
        """The secret; ValueError when it was sealed with another key."""
        blob = base64.b64decode(stored.removeprefix(_ENCRYPTED))
        try:
            return self._aead.decrypt(blob[:12], blob[12:], b"webhook-secret").decode()
        except InvalidTag as error:
            raise ValueError("the secret was encrypted with another WEBHOOK_SECRET_KEY") from error


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


async def resolve(host: str, port: int) -> list[str]:
    """The addresses a host name stands for (the system's resolver, as a connection uses)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, with the addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: list[str]


# IPv6 forms that carry an IPv4 address a gateway translates to (RFC 6052, 3056, 4380,
# 4291, 2765): each is as internal as the IPv4 address it carries. These carry it in their
# last 32 bits: NAT64, IPv4-compatible, IPv4-translated (mapped ones Python unwraps).
_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")
)
# For NAT64 inside one network (RFC 8215): never a public address, whatever it carries.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _carried(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped, NAT64, IPv4-compatible, 6to4,
    and both ends of a Teredo address."""
    carried = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    carried.extend(address.teredo or ())
    if any(address in network for network in _LAST_32_BITS):
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not address.is_global or address.is_multicast:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return address in _LOCAL_NAT64 or any(_internal(a) for a in _carried(address))
    return False


async def check_url(url: str, allow_private: bool, resolver: Resolve = resolve) -> Target | Problem:
    """The target of a webhook URL, or the INVALID_URL problem that says why not (a host
    that does not resolve within RESOLVE_SECONDS is one)."""

    def invalid(why: str) -> Problem:
        return Problem(_URL_FIELD, Code.INVALID_URL, why)

    if len(url) > MAX_URL:
        return invalid(f"A webhook URL may be at most {MAX_URL} characters long.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return invalid("This is not a valid URL.")
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("https", "http") or not host:
        return invalid("A webhook URL must be https://host/path.")
    if parts.username is not None or parts.password is not None:
        return invalid("A webhook URL may not hold a user name or password.")
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                addresses = await resolver(host, port)
        except TimeoutError:
            return invalid(f"The host {host!r} did not resolve within {RESOLVE_SECONDS:g} s.")
        except OSError:
            return invalid(f"The host {host!r} does not resolve to an address.")
    parsed = [ipaddress.ip_address(a) for a in addresses]
    if not parsed:
        return invalid(f"The host {host!r} does not resolve to an address.")
    if not allow_private and any(_internal(a) for a in parsed):
        return invalid(
            "The URL's host is (or resolves to) a loopback, private, link-local or otherwise "
            "internal address; webhooks go to public addresses only."
        )
    if scheme == "http" and not (allow_private and all(a.is_loopback for a in parsed)):
        return invalid("A webhook URL must use https (http only to a loopback address in tests).")
    return Target(url.strip(), scheme, host, port, addresses)


@dataclass(frozen=True)
class Settings:
    """What the webhook code needs from the server's settings."""

    box: SecretBox | None
    allow_private: bool = False
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    resolver: Resolve = field(default=resolve)


def _types(types: Sequence[EventType]) -> str:
    return " ".join(t.value for t in types)


def event_types(endpoint: WebhookEndpoint) -> list[EventType]:
    return [EventType(t) for t in endpoint.event_types.split()]


async def create_endpoint(
    session: AsyncSession,
    target: Target,
    types: Sequence[EventType],
    box: SecretBox,
    now: datetime,
) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint for events from now on, and its secret (shown this once)."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=target.url,
        event_types=_types(types),
        enabled=True,
        secret=box.seal(secret),
        enqueued_through=await events.head(session),
        created_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


def _not_found() -> Problem:
    return Problem("id", Code.NOT_FOUND, "There is no webhook endpoint with this id.")


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: int,
    *,
    target: Target | None,
    types: Sequence[EventType] | None,
    enabled: bool | None,
) -> WebhookEndpoint | Problem:
    """Change what is given (None: unchanged); NOT_FOUND when there is no such endpoint."""
    endpoint = await session.scalar(
        select(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id).with_for_update()
    )
    if endpoint is None:
        return _not_found()
    if target is not None:
        endpoint.url = target.url
    if types is not None:
        endpoint.event_types = _types(types)
    if enabled is not None:
        endpoint.enabled = enabled
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint_id: int) -> Problem | None:
    """Delete an endpoint with its deliveries; NOT_FOUND when there is none."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return _not_found()
    await session.delete(endpoint)
    await session.flush()
    return None


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return list(await session.scalars(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))))


_NEWEST_FIRST: tuple[Any, ...] = (col(WebhookDelivery.id),)
DELIVERIES = Ordering("DELIVERIES", _NEWEST_FIRST, Direction.DESC)


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: int,
    status: DeliveryStatus | None,
    *,
    first: int,
    after: str | None,
    secret: bytes,
) -> Page[WebhookDelivery]:
    """A page of an endpoint's deliveries, newest first; PageError for a bad cursor."""
    query = select(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if status is not None:
        query = query.where(col(WebhookDelivery.status) == status)
    return await fetch_page(session, query, DELIVERIES, first=first, after=after, secret=secret)


# The worker's side.

_BATCH = 500


async def needs_enqueue(db: Database) -> bool:
    """Whether some endpoint has not seen the newest events yet (a cheap read)."""
    return bool(await db.fetch(_BEHIND.on(db.engine.dialect), {}))


async def enqueue(session: AsyncSession, now: datetime) -> int:
    """Make deliveries of the events each endpoint has not seen; returns how many.

    Each endpoint row is locked (skipping one that another worker is at), so an event is
    enqueued once per endpoint. A disabled endpoint moves on without deliveries.
    """
    head = await events.head(session)
    endpoints = await session.scalars(
        select(WebhookEndpoint)
        .where(col(WebhookEndpoint.enqueued_through) < head)
        .order_by(col(WebhookEndpoint.id))
        .with_for_update(skip_locked=True)
    )
    made = 0
    for endpoint in list(endpoints):
        assert endpoint.id is not None
        through = min(head, endpoint.enqueued_through + _BATCH)
        if endpoint.enabled:
            query = sa_select(col(CustomerEvent.id)).where(
                col(CustomerEvent.id) > endpoint.enqueued_through,
                col(CustomerEvent.id) <= through,
            )
            wanted = event_types(endpoint)
            if wanted:
                query = query.where(col(CustomerEvent.type).in_(wanted))
            deliveries = [
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    event_id=event_id,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                for (event_id,) in (await session.execute(query.order_by(col(CustomerEvent.id))))
            ]
            if deliveries:
                session.add_all(deliveries)
                await session.flush()  # numbers them
                endpoint.queued_through = max(d.id or 0 for d in deliveries)
                made += len(deliveries)
        endpoint.enqueued_through = through
    await session.flush()
    return made


def _head_ids(endpoint_id: int | None) -> Any:
    """The id of each enabled endpoint's oldest pending delivery (of one endpoint, if given)."""
    endpoint, pending = aliased(WebhookEndpoint), aliased(WebhookDelivery)
    oldest = (
        sa_select(col(pending.id))
        .where(
            col(pending.endpoint_id) == col(endpoint.id),
            col(pending.status) == DeliveryStatus.PENDING,
            col(pending.id) > col(endpoint.settled_through),
            col(pending.id) <= col(endpoint.queued_through),
        )
        .order_by(col(pending.id))
        .limit(1)
        .correlate(endpoint)
        .scalar_subquery()
    )
    ids = sa_select(oldest).where(col(endpoint.enabled))
    return ids if endpoint_id is None else ids.where(col(endpoint.id) == endpoint_id)


def heads(now: datetime | None = None, endpoint_id: int | None = None, *also: Any) -> Any:
    """The oldest pending delivery of each enabled endpoint (only those due at `now`, when
    given; of one endpoint, when given), soonest due first, with the columns in `also`: what
    may go next, since an endpoint's deliveries go in feed order.

    Read from the endpoints, not from the pending deliveries: each endpoint's head is one
    step down ix_webhook_delivery_endpoint (endpoint_id, status, id), then one row by its
    key, so a round costs the same with 20 or 20,000 deliveries queued (a min(id)
    correlated with every pending row read the whole backlog, see bench/webhooks.py). The
    search runs between the endpoint's newest settled delivery (`settled_through`) and its
    newest one (`queued_through`), so a plan that walks the primary key instead, as
    PostgreSQL's may when pending rows are common, passes only the other endpoints'
    deliveries made in between, never every delivery ever settled, nor, for an endpoint
    with nothing pending, the whole rest of the table."""
    return _heads((WebhookDelivery, *also), now, endpoint_id)


def _heads(selected: Sequence[Any], now: Any, endpoint_id: int | None) -> Any:
    """`heads`, selecting `selected`; `now` a time, a bound parameter, or None."""
    query = (
        sa_select(*selected)
        .where(
            col(WebhookDelivery.id).in_(_head_ids(endpoint_id)),
            # Checked again on the row itself: PostgreSQL re-reads a row it waited to lock.
            col(WebhookDelivery.status) == DeliveryStatus.PENDING,
        )
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
    )
    return query if now is None else query.where(col(WebhookDelivery.next_attempt_at) <= now)


async def any_due(db: Database, now: datetime) -> bool:
    """Whether a delivery is due (a cheap read, so idle workers take no write lock)."""
    return bool(await db.fetch(_DUE.on(db.engine.dialect), {"now": now}))


async def next_due(db: Database) -> datetime | None:
    """When the soonest delivery that may go next is due. Deliveries queued behind their
    endpoint's oldest one, or of a disabled endpoint, do not count: their (past) times
    would wake the worker at once, again and again, while the head waits out its backoff."""
    rows = await db.fetch(_NEXT_DUE.on(db.engine.dialect), {})
    return rows[0].next_attempt_at if rows else None


# The reads the worker makes in every round, which on PostgreSQL is every commit's
# notification: compiled once and run on a reader connection. Built through the ORM each
# round (`heads` aliases two entities), a round cost about 10 ms of CPU with no endpoint at
# all, and under a burst of writes the worker took most of a core.
_DELIVERIES = WebhookDelivery.__table__.c  # type: ignore[attr-defined]
_BEHIND = PerDialect(
    lambda _dialect: (
        sa_select(col(WebhookEndpoint.id))
        .where(col(WebhookEndpoint.enqueued_through) < events.head_query().scalar_subquery())
        .limit(1)
    )
)
_DUE = PerDialect(
    lambda _dialect: _heads(
        [_DELIVERIES.id], bindparam("now", type_=_DELIVERIES.next_attempt_at.type), None
    ).limit(1)
)
_NEXT_DUE = PerDialect(lambda _dialect: _heads([_DELIVERIES.next_attempt_at], None, None).limit(1))


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to this worker for one attempt, with what sending it needs."""

    delivery_id: int
    endpoint_id: int
    attempt: int  # 1 for the first
    url: str
    sealed_secret: str
    event: CustomerEvent | None  # None once pruned: it can no longer be sent


def claimable(now: datetime, limit: int, endpoint_id: int | None = None) -> Any:
    """The statement `claim` locks its deliveries with (with their endpoint and event)."""
    return (
        heads(
            now, endpoint_id, col(WebhookEndpoint.url), col(WebhookEndpoint.secret), CustomerEvent
        )
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .outerjoin(CustomerEvent, col(CustomerEvent.id) == col(WebhookDelivery.event_id))
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )


async def claim(
    session: AsyncSession,
    now: datetime,
    limit: int,
    lease: timedelta = LEASE,
    endpoint_id: int | None = None,
) -> list[Claimed]:
    """Lease up to `limit` due deliveries (one per endpoint; of one endpoint, when given) for
    an attempt each; a lease must outlast an attempt (a worker that dies mid-attempt is
    taken over when it ends)."""
    claimed = []
    for delivery, url, secret, event in (
        await session.execute(claimable(now, limit, endpoint_id))
    ).all():
        delivery.attempts += 1
        delivery.next_attempt_at = now + lease
        claimed.append(
            Claimed(delivery.id, delivery.endpoint_id, delivery.attempts, url, secret, event)
        )
    await session.flush()
    return claimed


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status (None when there was no answer) and why it failed."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


# Told of every delivery attempt as it is recorded: the delivery's status after it (succeeded,
# pending a retry, or failed for good). The server counts them in its metrics.
AttemptObserver = Callable[[DeliveryStatus], None]
attempt_observers: list[AttemptObserver] = []


async def record_attempt(
    session: AsyncSession,
    claimed: Claimed,
    outcome: Outcome,
    now: datetime,
    schedule: Sequence[float] = RETRY_SCHEDULE,
) -> DeliveryStatus:
    """Record the attempt, and settle the delivery: succeeded, retried later, or failed."""
    session.add(
        WebhookAttempt(
            delivery_id=claimed.delivery_id,
            attempted_at=now,
            response_status=outcome.status,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    values: dict[str, Any] = {"last_response_status": outcome.status, "last_error": outcome.error}
    if outcome.succeeded:
        status = DeliveryStatus.SUCCEEDED
        values.update(delivered_at=now, next_attempt_at=None)
    elif claimed.attempt > len(schedule) or claimed.event is None:
        status = DeliveryStatus.FAILED
        values.update(next_attempt_at=None)
    else:
        delay = schedule[claimed.attempt - 1] * random.uniform(0.8, 1.2)  # jitter
        status = DeliveryStatus.PENDING
        values.update(next_attempt_at=now + timedelta(seconds=delay))
    # Only while this worker's lease holds: if it ran out and another worker took the
    # delivery over, that worker settles it.
    settled = await session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == claimed.delivery_id,
            col(WebhookDelivery.attempts) == claimed.attempt,
            col(WebhookDelivery.status) == DeliveryStatus.PENDING,
        )
        .values(status=status, **values)
    )
    if status is not DeliveryStatus.PENDING and settled.rowcount == 1:  # type: ignore[attr-defined]
        # The endpoint's head moves past it (it was the oldest pending: none is below it).
        await session.execute(
            update(WebhookEndpoint)
            .where(
                col(WebhookEndpoint.id) == claimed.endpoint_id,
                col(WebhookEndpoint.settled_through) < claimed.delivery_id,
            )
            .values(settled_through=claimed.delivery_id)
        )
    for observe in attempt_observers:
        observe(status)
    return status
