"""The webhook delivery worker: one in every server process, sharing the work through the
database (see `db.webhooks` for how deliveries are enqueued, leased and settled).

An attempt re-checks the URL (DNS included) and connects to the address it checked, signs
the body per Standard Webhooks (`webhook-id`: the event's id, the same on every retry;
`webhook-timestamp`: when the attempt is sent; `webhook-signature`: `v1,` + base64
HMAC-SHA256 of `id.timestamp.body` under the endpoint's secret), and POSTs it with no
redirects, no proxy from the environment, and a timeout. A 2xx answer succeeds; anything
else is retried on the schedule, and every attempt is recorded. The response body is never
read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx

from db import webhooks
from db.rules import Problem
from db.webhooks import Claimed, Outcome
from schema import ids
from schema.context import AppState
from schema.errors import report
from schema.events import webhook_body

logger = logging.getLogger("customer_api.webhooks")

IDLE_SECONDS = 1.0  # the longest the worker sleeps without looking


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value for this message."""
    key = base64.b64decode(secret.removeprefix(webhooks.SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _pinned_url(target: webhooks.Target, address: str) -> str:
    """The URL with its host replaced by the checked address (the Host header keeps the name)."""
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    parts = urlsplit(target.url)
    return urlunsplit((target.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


class DeliveryWorker:
    """Enqueues, claims and sends deliveries until cancelled."""

    def __init__(
        self,
        state: AppState,
        *,
        timeout_seconds: float = 10,
        concurrency: int = 8,
    ) -> None:
        self.db = state.db
        self.feed = state.feed
        self.settings = state.webhooks
        self.clock = state.clock
        self.timeout_seconds = timeout_seconds
        self.concurrency = concurrency
        self.cursor_secret = state.cursor_secret  # the body's cursor is signed as the API's are
        # A lease outlasts an attempt: the timeout, and room to record the outcome.
        self.lease = timedelta(seconds=timeout_seconds + 5)

    async def run(self) -> None:
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=self.timeout_seconds
        ) as client:
            seen = 0
            while True:
                try:
                    seen = self.feed.latest
                    if await self.work(client):
                        continue  # there may be more: look again at once
                    pause = await self.pause()
                except Exception as error:
                    # The database restarting, say: try again shortly (logged once a minute a
                    # cause, frames only, as the other background work is).
                    report(error, "the webhook worker")
                    pause = IDLE_SECONDS
                await self.feed.wait_beyond(seen, pause)

    async def pause(self) -> float:
        """Seconds until the soonest pending delivery is due (at most IDLE_SECONDS)."""
        async with self.db.read() as session:
            due = await webhooks.next_due(session)
        if due is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.0, (due - self.clock()).total_seconds()))

    async def work(self, client: httpx.AsyncClient) -> bool:
        """One round: enqueue new events, send what is due; whether anything was sent."""
        async with self.db.read() as session:
            behind = await webhooks.needs_enqueue(session)
        if behind:
            async with self.db.write() as session:
                await webhooks.enqueue(session, self.clock())
        now = self.clock()
        async with self.db.read() as session:
            due = await webhooks.any_due(session, now)
        if not due:
            return False
        async with self.db.write() as session:
            claimed = await webhooks.claim(session, now, self.concurrency, self.lease)
        await asyncio.gather(*(self.deliver(client, c) for c in claimed))
        return bool(claimed)

    async def deliver(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        outcome = await self.attempt(client, claimed)
        async with self.db.write() as session:
            status = await webhooks.record_attempt(
                session, claimed, outcome, self.clock(), self.settings.retry_schedule
            )
        if not outcome.succeeded:
            logger.info(
                "webhook delivery %d attempt %d failed (%s); now %s",
                claimed.delivery_id,
                claimed.attempt,
                outcome.error,
                status.value,
            )

    async def attempt(self, client: httpx.AsyncClient, claimed: Claimed) -> Outcome:
        began = time.perf_counter()

        def failed(error: str, status: int | None = None) -> Outcome:
            return Outcome(status, error, int((time.perf_counter() - began) * 1000))

        if claimed.event is None:
            return failed("the event is past retention")
        box = self.settings.box
        if box is None:
            return failed("the server has no WEBHOOK_SECRET_KEY")
        target = await webhooks.check_url(
            claimed.url, self.settings.allow_private, self.settings.resolver
        )
        if isinstance(target, Problem):
            return failed("the URL is not an allowed target now")
        body = webhook_body(claimed.event, self.cursor_secret)
        timestamp = int(time.time())
        message_id = ids.encode("CustomerEvent", claimed.event.id)
        headers = {
            "content-type": "application/json",
            "user-agent": "customer-api-webhooks",
            "host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(box.open(claimed.sealed_secret), message_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with client.stream(
                "POST",
                _pinned_url(target, target.addresses[0]),
                content=body,
                headers=headers,
                extensions=extensions,
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return failed(f"no answer within {self.timeout_seconds:g} s")
        except httpx.HTTPError as error:
            return failed(f"could not connect ({type(error).__name__})")
        if 200 <= status < 300:
            return Outcome(status, None, int((time.perf_counter() - began) * 1000))
        return failed(f"answered HTTP {status}", status)
