"""The webhook delivery worker: one in every server process, sharing the work through the
database (see `db.webhooks` for how deliveries are enqueued, leased and settled).

An attempt re-checks the URL (DNS included) and connects to the address it checked, signs
the body per Standard Webhooks (`webhook-id`: the event's id, the same on every retry;
`webhook-timestamp`: when the attempt is sent; `webhook-signature`: `v1,` + base64
HMAC-SHA256 of `id.timestamp.body` under the endpoint's secret), and POSTs it with no
redirects, no proxy from the environment, and one deadline for the whole attempt. A 2xx
answer succeeds; anything else is retried on the schedule, and every attempt is recorded.
The response body is never read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx

from db import webhooks
from db.models import DeliveryStatus
from db.rules import Problem
from db.webhooks import Claimed, Outcome
from schema import ids
from schema.context import AppState
from schema.errors import report
from schema.events import webhook_body
from web.tracing import Tracing

logger = logging.getLogger("customer_api.webhooks")

IDLE_SECONDS = 1.0  # the longest the worker sleeps without looking
# The least time from one round's start to the next one's. On PostgreSQL every commit
# notifies, and under a burst of writes a round per commit took a large share of the CPU
# the writes needed; this bounds a round's cost to 20 a second, as SQLite's poll of the
# counter does, and adds at most this much to a delivery's latency.
ROUND_SECONDS = 0.05


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


def _failed(began: float, error: str, status: int | None = None) -> Outcome:
    return Outcome(status, error, int((time.perf_counter() - began) * 1000))


class DeliveryWorker:
    """Enqueues new events, and sends each endpoint's deliveries in a task of its own, until
    cancelled.

    An endpoint's task sends its deliveries one after another (feed order) and, in the
    transaction that records an attempt, leases the endpoint's next one: a delivery costs
    one write besides its request, whatever the backlog. At most `concurrency` endpoints are
    served at once; a slow or hostile receiver holds only its own endpoint's task, and each
    attempt, from the DNS lookup to the last byte of the answer, ends at one deadline
    (`timeout_seconds`), not at a timeout per read that a receiver dripping bytes can renew.
    """

    def __init__(
        self,
        state: AppState,
        *,
        timeout_seconds: float = 10,
        concurrency: int = 8,
        tracing: Tracing | None = None,
    ) -> None:
        self.tracing = tracing or Tracing.off()
        self.db = state.db
        self.feed = state.feed
        self.settings = state.webhooks
        self.clock = state.clock
        self.timeout_seconds = timeout_seconds
        self.concurrency = concurrency
        self.cursor_secret = state.cursor_secret  # the body's cursor is signed as the API's are
        # A lease outlasts an attempt: its deadline, and room to record the outcome.
        self.lease = timedelta(seconds=timeout_seconds + 5)
        self._serving: set[asyncio.Task[None]] = set()  # one task per endpoint being served
        self._freed = asyncio.Event()  # set when an endpoint's task ends

    async def run(self) -> None:
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=self.timeout_seconds
        ) as client:
            try:
                seen = 0
                loop = asyncio.get_running_loop()
                while True:
                    began = loop.time()
                    try:
                        seen = self.feed.latest
                        self._freed.clear()  # a task that ends from here on wakes the wait
                        await self.work(client)
                        pause = await self.pause()
                    except Exception as error:
                        # The database restarting, say: try again shortly (logged once a
                        # minute a cause, frames only, as the other background work is).
                        report(error, "the webhook worker")
                        pause = IDLE_SECONDS
                    await self._wait(seen, pause)
                    if (rest := began + ROUND_SECONDS - loop.time()) > 0:
                        await asyncio.sleep(rest)
            finally:
                for task in self._serving:
                    task.cancel()
                if self._serving:
                    await asyncio.wait(self._serving)

    async def _wait(self, seen: int, pause: float) -> None:
        """Until there is news in the feed, an endpoint's task ends, or `pause` seconds."""
        waits = [
            asyncio.ensure_future(self.feed.wait_beyond(seen, pause)),
            asyncio.ensure_future(self._freed.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def pause(self) -> float:
        """Seconds until the soonest pending delivery is due (at most IDLE_SECONDS); with
        every slot taken, until one is free."""
        if len(self._serving) >= self.concurrency:
            return IDLE_SECONDS  # an endpoint's task that ends wakes the worker
        due = await webhooks.next_due(self.db)
        if due is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.0, (due - self.clock()).total_seconds()))

    async def work(self, client: httpx.AsyncClient) -> None:
        """Enqueue new events, and start serving the endpoints whose next delivery is due."""
        if await webhooks.needs_enqueue(self.db):
            async with self.db.write() as session:
                await webhooks.enqueue(session, self.clock())
        free = self.concurrency - len(self._serving)
        if free <= 0:
            return
        now = self.clock()
        if not await webhooks.any_due(self.db, now):
            return
        async with self.db.write() as session:
            claimed = await webhooks.claim(session, now, free, self.lease)
        for first in claimed:
            task = asyncio.create_task(self.serve(client, first), name="a webhook endpoint")
            self._serving.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._serving.discard(task)
        self._freed.set()

    async def serve(self, client: httpx.AsyncClient, claimed: Claimed | None) -> None:
        """Send an endpoint's deliveries, oldest first, while they are due."""
        try:
            while claimed is not None:
                claimed = await self.deliver(client, claimed)
        except Exception as error:
            # The database went away while recording: the lease runs out and the delivery
            # is sent again, so nothing is lost.
            report(error, "the webhook worker")

    async def deliver(self, client: httpx.AsyncClient, claimed: Claimed) -> Claimed | None:
        """Send one delivery and record the attempt; the endpoint's next delivery, leased in
        the same transaction, when this one is settled and the next is due."""
        outcome = await self.attempt(client, claimed)
        now = self.clock()
        following: list[Claimed] = []
        async with self.db.write() as session:
            status = await webhooks.record_attempt(
                session, claimed, outcome, now, self.settings.retry_schedule
            )
            if status is not DeliveryStatus.PENDING:
                following = await webhooks.claim(
                    session, now, 1, self.lease, endpoint_id=claimed.endpoint_id
                )
        if not outcome.succeeded:
            logger.info(
                "webhook delivery %d attempt %d failed (%s); now %s",
                claimed.delivery_id,
                claimed.attempt,
                outcome.error,
                status.value,
            )
        return following[0] if following else None

    async def attempt(self, client: httpx.AsyncClient, claimed: Claimed) -> Outcome:
        """One attempt, ended at its deadline wherever it is: resolving, connecting, sending,
        or waiting for the answer's headers (however slowly they come)."""
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._attempt(client, claimed, began)
        except TimeoutError:
            return _failed(began, f"no answer within {self.timeout_seconds:g} s")

    async def _attempt(self, client: httpx.AsyncClient, claimed: Claimed, began: float) -> Outcome:
        def failed(error: str, status: int | None = None) -> Outcome:
            return _failed(began, error, status)

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
        # A span of the trace of the write that made the event (web/tracing.py), carried on in
        # the request's traceparent header; nothing with tracing off.
        with self.tracing.delivery(
            claimed.event.traceparent,
            delivery_id=claimed.delivery_id,
            endpoint_id=claimed.endpoint_id,
            attempt=claimed.attempt,
        ) as traced:
            if traced is not None:
                headers.update(traced.headers)
            outcome = await self._send(client, target, body, headers, extensions, began)
            if traced is not None:
                traced.answered(outcome.status, outcome.error)
        return outcome

    async def _send(
        self,
        client: httpx.AsyncClient,
        target: webhooks.Target,
        body: bytes,
        headers: dict[str, str],
        extensions: dict[str, str],
        began: float,
    ) -> Outcome:
        try:
            async with client.stream(
                "POST",
                _pinned_url(target, target.addresses[0]),
                content=body,
                headers=headers,
                extensions=extensions,
            ) as response:
                status = response.status_code
                await _drain(response, self.timeout_seconds - (time.perf_counter() - began))
        except httpx.TimeoutException:
            return _failed(began, f"no answer within {self.timeout_seconds:g} s")
        except httpx.HTTPError as error:
            return _failed(began, f"could not connect ({type(error).__name__})")
        if 200 <= status < 300:
            return Outcome(status, None, int((time.perf_counter() - began) * 1000))
        return _failed(began, f"answered HTTP {status}", status)


# The most of an answer's body read so that its connection can serve the endpoint's next
# delivery, and the longest it may take: the status alone decides the outcome, so a body
# that is longer or slower only costs the connection (it is closed, not reused).
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0


async def _drain(response: httpx.Response, left: float) -> None:
    """Read the answer's body, within its bounds and the attempt's `left` seconds; past
    them, give up quietly: closing the response then closes its connection."""
    bound = min(DRAIN_SECONDS, left - 0.1)
    if bound <= 0:
        return
    read = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(bound):
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > DRAIN_BYTES:
                    return
