"""End to end: real server processes, clients changing customers and KYC through all of them,
subscribers on each; every subscriber gets every event once, in feed order, and the feed read
afterwards is the same sequence, also for a subscriber that drops out and resumes.

The load runs EVENT_LOAD_SECONDS (default 3, so CI stays quick; the issue's 30 s run is
`EVENT_LOAD_SECONDS=30 pytest tests/test_feed_e2e.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import operation
from tests.support.servers import running_server
from tests.support.sockets import socket

LOAD_SECONDS = float(os.environ.get("EVENT_LOAD_SECONDS", "3"))
CLIENTS = 8
AUTH = {"authorization": f"Bearer {TEST_API_KEY}"}
SUBSCRIPTION = operation("on_customer_events")


async def run(client: httpx.AsyncClient, name: str, **variables: Any) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": operation(name), "variables": variables}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def work(clients: list[httpx.AsyncClient], number: int, until: float) -> None:
    """One client: customers made, changed, verified and deleted, through every server."""
    servers = itertools.cycle(clients[number % len(clients) :] + clients[: number % len(clients)])
    n = 0
    while time.monotonic() < until:
        n += 1
        external_id = f"load-{number}-{n}"
        data = {"email": f"{external_id}@example.com"}
        await run(
            next(servers),
            "create_customer",
            input={"externalCustomerId": external_id, "data": data},
        )
        await run(
            next(servers),
            "update_customer",
            input={"externalCustomerId": external_id, "data": {"city": f"City {n}"}},
        )
        started = await run(
            next(servers), "start_kyc_verification", input={"externalCustomerId": external_id}
        )
        verification = started["startKycVerification"]["verification"]["id"]
        status = "UNDER_REVIEW" if n % 2 else "VERIFIED"
        await run(
            next(servers),
            "record_kyc_result",
            input={"verificationId": verification, "status": status},
        )
        if status == "UNDER_REVIEW":
            await run(
                next(servers),
                "review_kyc_verification",
                input={"verificationId": verification, "decision": "APPROVE"},
            )
        if n % 3 == 0:
            await run(next(servers), "delete_customer", input={"externalCustomerId": external_id})


async def whole_feed(client: httpx.AsyncClient, after: str) -> list[str]:
    cursors: list[str] = []
    while True:
        page = (await run(client, "customer_events", first=100, after=after))["customerEvents"]
        cursors += [node["cursor"] for node in page["nodes"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return cursors


class Subscriber:
    """Collects the cursors of the events it gets; may drop out once and resume elsewhere."""

    def __init__(self, urls: list[str], after: str, drop_after: int | None = None) -> None:
        self.urls, self.after, self.drop_after = urls, after, drop_after
        self.cursors: list[str] = []
        self.ready = asyncio.Event()

    async def listen(self, url: str, limit: int | None) -> None:
        async with socket(url) as ws:
            ack = await ws.init(TEST_API_KEY)
            assert ack["type"] == "connection_ack"
            await ws.subscribe("feed", SUBSCRIPTION, {"after": self.after})
            self.ready.set()
            while limit is None or len(self.cursors) < limit:
                message = await ws.receive(within=120)
                assert message["type"] == "next", message
                cursor = message["payload"]["data"]["customerEvents"]["cursor"]
                self.cursors.append(cursor)
                self.after = cursor

    async def run(self) -> None:
        if self.drop_after is not None:
            await self.listen(self.urls[0], self.drop_after)  # then it disconnects
        await self.listen(self.urls[-1], None)


async def feed_under_load(urls: list[str]) -> None:
    async with http_clients(urls) as clients:
        seed = f"seed-{time.monotonic_ns()}"
        await run(
            clients[0],
            "create_customer",
            input={"externalCustomerId": seed, "data": {"email": f"{seed}@example.com"}},
        )
        page = await run(
            clients[0], "customer_events", first=1, filter={"externalCustomerId": seed}
        )
        start = page["customerEvents"]["nodes"][0]["cursor"]
        ws_urls = [url.replace("http://", "ws://") + "/graphql" for url in urls]
        subscribers = [Subscriber([ws_url], start) for ws_url in ws_urls]
        # One drops out after a few events and resumes, with its last cursor, on another server.
        subscribers.append(Subscriber([ws_urls[0], ws_urls[-1]], start, drop_after=25))
        listening = [asyncio.create_task(s.run()) for s in subscribers]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(s.ready.wait() for s in subscribers))
            until = time.monotonic() + LOAD_SECONDS
            await asyncio.gather(*(work(clients, n, until) for n in range(CLIENTS)))
            expected = await whole_feed(clients[-1], start)
            assert len(expected) > 25
            async with asyncio.timeout(60):
                while any(len(s.cursors) < len(expected) for s in subscribers):
                    for task in listening:
                        if task.done():
                            task.result()  # a subscriber that failed says why
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # a duplicate or a stray event would arrive by now
            for subscriber in subscribers:
                assert subscriber.cursors == expected
            print(f"{len(urls)} server(s), {LOAD_SECONDS:g} s: {len(expected)} events, each to "
                  f"{len(subscribers)} subscribers once, in feed order")  # fmt: skip
        finally:
            for task in listening:
                task.cancel()
            await asyncio.gather(*listening, return_exceptions=True)


@asynccontextmanager
async def http_clients(urls: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per server."""
    clients = [httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) for url in urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.parametrize(("backend", "processes"), [("sqlite", 1), ("postgresql", 2)])
def test_every_subscriber_gets_the_feed_in_order_exactly_once(
    databases: Databases, backend: str, processes: int
) -> None:
    url = databases.url_for(backend)
    try:
        with ExitStack() as stack:
            servers = [
                stack.enter_context(running_server(url, KYC_SWEEP_INTERVAL_SECONDS="0"))
                for _ in range(processes)
            ]
            asyncio.run(feed_under_load([server.url for server in servers]))
    finally:
        databases.drop(url)
