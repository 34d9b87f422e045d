"""Webhooks: endpoints managed through the API, deliveries signed per Standard Webhooks (checked
with the specification's own `standardwebhooks` library), retried, in order, resumed after a
crash, and never sent to an internal address unless a setting allows it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from standardwebhooks import Webhook

from db import models, webhooks
from db.engine import Database
from db.models import utc_now
from db.rules import Problem
from db.webhooks import check_url
from tests.support.clock import Clock
from tests.support.databases import TEST_API_KEY, Databases
from tests.support.graphql_client import GraphQLClient, operation
from tests.support.log_privacy import personal_data_in
from tests.support.receivers import Received, dripping, receiving
from tests.support.servers import running_server
from web.metrics import REGISTRY

KEY = base64.b64encode(os.urandom(32)).decode()
SETTINGS = {
    "webhook_worker": True,
    "webhook_secret_key": KEY,
    "webhook_allow_private_targets": True,
    "webhook_retry_schedule": "0.05,0.1,0.2,0.4,0.8,1.6",
}


class RealClock(Clock):
    """Deliveries are retried by the wall clock: these tests let it run."""

    def __call__(self) -> datetime:
        return utc_now()


@pytest.fixture
def clock() -> Clock:
    return RealClock()


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    return dict(SETTINGS)


async def settled_deliveries(gql: GraphQLClient, count: int, within: float = 30) -> Any:
    """The first endpoint's deliveries, newest first, once `count` of them have settled."""
    async with asyncio.timeout(within):
        while True:
            endpoint = (await gql.run("webhook_endpoints"))["webhookEndpoints"][0]
            nodes = endpoint["deliveries"]["nodes"]
            if sum(d["status"] != "PENDING" for d in nodes) >= count:
                return nodes
            await asyncio.sleep(0.02)  # polls a condition, bounded by the timeout


async def create_endpoint(gql: GraphQLClient, url: str, **more: Any) -> dict[str, Any]:
    result = await gql.run("create_webhook_endpoint", input={"url": url, **more})
    payload: dict[str, Any] = result["createWebhookEndpoint"]
    return payload


def verified(secret: str, received: Received) -> dict[str, Any]:
    """The body, after the standardwebhooks library has checked its signature."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


async def test_an_endpoint_is_made_with_a_secret_shown_once_and_stored_encrypted(
    gql: GraphQLClient, db: Database
) -> None:
    made = await create_endpoint(gql, "https://93.184.216.34/hook", eventTypes=["CUSTOMER_CREATED"])
    assert made["userErrors"] == []
    secret = made["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    endpoint = made["endpoint"]
    assert (endpoint["url"], endpoint["eventTypes"], endpoint["enabled"]) == (
        "https://93.184.216.34/hook",
        ["CUSTOMER_CREATED"],
        True,
    )
    async with db.read() as session:
        [row] = list(await session.scalars(select(models.WebhookEndpoint)))
    assert row.secret.startswith("v1:")
    assert secret.removeprefix("whsec_") not in row.secret
    listed = (await gql.run("webhook_endpoints"))["webhookEndpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in json.dumps(listed)

    changed = await gql.run(
        "update_webhook_endpoint", input={"id": endpoint["id"], "enabled": False, "eventTypes": []}
    )
    assert changed["updateWebhookEndpoint"]["endpoint"]["enabled"] is False
    assert changed["updateWebhookEndpoint"]["endpoint"]["eventTypes"] == []
    deleted = await gql.run("delete_webhook_endpoint", input={"id": endpoint["id"]})
    assert deleted["deleteWebhookEndpoint"] == {"deletedId": endpoint["id"], "userErrors": []}
    again = await gql.run("delete_webhook_endpoint", input={"id": endpoint["id"]})
    assert [e["code"] for e in again["deleteWebhookEndpoint"]["userErrors"]] == ["NOT_FOUND"]


INTERNAL = (
    "The URL's host is (or resolves to) a loopback, private, link-local or otherwise internal "
    "address; webhooks go to public addresses only."
)
HTTPS = "A webhook URL must use https (http only to a loopback address in tests)."


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/hook", INTERNAL),
        ("https://localhost:8443/hook", INTERNAL),
        ("https://10.1.2.3/hook", INTERNAL),
        ("https://192.168.0.10/hook", INTERNAL),
        ("https://169.254.169.254/latest/meta-data", INTERNAL),
        ("https://[::1]/hook", INTERNAL),
        ("https://[::ffff:10.0.0.1]/hook", INTERNAL),
        ("https://100.64.0.1/hook", INTERNAL),
        ("https://0.0.0.0/hook", INTERNAL),
        ("https://224.0.0.1/hook", INTERNAL),
        ("http://127.0.0.1:9/hook", INTERNAL),
        ("http://93.184.216.34/hook", HTTPS),
        ("ftp://93.184.216.34/hook", "A webhook URL must be https://host/path."),
        ("not a url", "A webhook URL must be https://host/path."),
        ("https://user:pw@93.184.216.34/", "A webhook URL may not hold a user name or password."),
        ("https://93.184.216.34:99999/", "This is not a valid URL."),
        (
            "https://93.184.216.34/" + "a" * 2048,
            "A webhook URL may be at most 2048 characters long.",
        ),
        ("https://93.184.216.34/hook", None),
    ],
)
async def test_urls_are_checked_before_an_endpoint_is_made(url: str, message: str | None) -> None:
    checked = await check_url(url, allow_private=False)
    assert (checked.message if isinstance(checked, Problem) else None) == message


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("64:ff9b::10.0.0.1", INTERNAL),  # NAT64 (RFC 6052) of a private address
        ("64:ff9b::127.0.0.1", INTERNAL),
        ("64:ff9b::a9fe:a9fe", INTERNAL),  # ... of 169.254.169.254
        ("64:ff9b:1::a00:1", INTERNAL),  # local-use NAT64 (RFC 8215)
        ("64:ff9b:1:ffff::5db8:d822", INTERNAL),
        ("2002:a00:1::1", INTERNAL),  # 6to4 (RFC 3056) of 10.0.0.1
        ("2002:7f00:1::", INTERNAL),  # ... of 127.0.0.1
        ("2002:c0a8:a::1", INTERNAL),  # ... of 192.168.0.10
        ("::10.0.0.1", INTERNAL),  # IPv4-compatible
        ("::127.0.0.1", INTERNAL),
        ("::169.254.169.254", INTERNAL),
        ("::ffff:127.0.0.1", INTERNAL),  # IPv4-mapped
        ("::ffff:0:a00:1", INTERNAL),  # IPv4-translated (RFC 2765)
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", INTERNAL),  # Teredo, client 10.0.0.1
        ("2001:0:a00:1:8000:63bf:a24b:2dcb", INTERNAL),  # Teredo, server 10.0.0.1
        ("64:ff9b::93.184.216.34", None),  # a public address, through NAT64 ...
        ("2002:5db8:d822::1", None),  # ... or 6to4
        ("2606:2800:220:1:248:1893:25c8:1946", None),
    ],
)
async def test_ipv6_forms_of_internal_ipv4_addresses_are_internal(
    address: str, message: str | None
) -> None:
    """Written in the URL, or what its host name resolves to."""

    async def resolver(_host: str, _port: int) -> list[str]:
        return [address]

    literal = await check_url(f"https://[{address}]/hook", allow_private=False)
    named = await check_url("https://hooks.example/hook", allow_private=False, resolver=resolver)
    for checked in (literal, named):
        assert (checked.message if isinstance(checked, Problem) else None) == message


async def test_a_dns_lookup_that_hangs_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hangs(_host: str, _port: int) -> list[str]:
        await asyncio.Event().wait()  # a resolver that never answers
        return []

    monkeypatch.setattr(webhooks, "RESOLVE_SECONDS", 0.2, raising=False)
    async with asyncio.timeout(5):
        checked = await check_url("https://hooks.example/hook", False, resolver=hangs)
    assert isinstance(checked, Problem)
    assert checked.message == "The host 'hooks.example' did not resolve within 0.2 s."


@pytest.mark.parametrize("setting_overrides", [{"webhook_secret_key": KEY, "webhook_worker": True}])
async def test_a_private_address_is_invalid_url(gql: GraphQLClient, db: Database) -> None:
    made = await create_endpoint(gql, "https://10.1.2.3/hook")
    assert made["userErrors"] == [
        {"field": ["input", "url"], "code": "INVALID_URL", "message": INTERNAL}
    ]
    assert (made["endpoint"], made["secret"]) == (None, None)
    async with db.read() as session:
        assert list(await session.scalars(select(models.WebhookEndpoint))) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/hook", None),
        ("https://10.1.2.3/hook", None),
        ("http://10.1.2.3/hook", HTTPS),
    ],
)
async def test_the_setting_allows_private_addresses_and_http_to_loopback(
    gql: GraphQLClient, url: str, message: str | None
) -> None:
    errors = (await create_endpoint(gql, url))["userErrors"]
    assert [e["message"] for e in errors] == ([] if message is None else [message])


@pytest.mark.parametrize("setting_overrides", [{}])
async def test_without_a_secret_key_no_endpoint_is_made(gql: GraphQLClient, db: Database) -> None:
    made = await create_endpoint(gql, "https://93.184.216.34/")
    assert made == {
        "secret": None,
        "endpoint": None,
        "userErrors": [
            {
                "field": ["input", "url"],
                "code": "INVALID",
                "message": "Webhooks need WEBHOOK_SECRET_KEY set on the server, to keep signing "
                "secrets encrypted (see the README); ask the server's operator.",
            }
        ],
    }
    async with db.read() as session:
        assert list(await session.scalars(select(models.WebhookEndpoint))) == []


async def feed_ids(gql: GraphQLClient) -> list[str]:
    page = (await gql.run("customer_events", first=100))["customerEvents"]
    return [node["id"] for node in page["nodes"]]


def counted(name: str, **labels: str) -> float:
    """A sample of the server's metrics registry (the worker runs in the test's process)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
async def test_failing_endpoint_gets_every_event_in_order_signed_with_a_stable_id(
    gql: GraphQLClient, db: Database
) -> None:
    attempts_metric = "webhook_delivery_attempts_total"
    retried, succeeded = (
        counted(attempts_metric, status="pending"),
        counted(attempts_metric, status="succeeded"),
    )
    created = counted("customer_events_total", type="customer_created")
    with receiving(lambda n: 500 if n < 3 else 204) as receiver:
        made = await create_endpoint(gql, receiver.url)
        secret = made["secret"]
        await gql.create("c-1", phone="+12015550123", firstName="Ann")
        await gql.update("c-1", city="Oslo")
        started = await gql.start_kyc("c-1")
        await gql.record_kyc(started["verification"]["id"], "VERIFIED")
        await gql.create("c-2")
        delivered = await asyncio.to_thread(receiver.wait_for, 5)
        every = list(receiver.received)
    bodies = [verified(secret, r) for r in delivered]
    assert [b["data"]["eventId"] for b in bodies] == await feed_ids(gql)
    assert [r.headers["webhook-id"] for r in delivered] == [b["data"]["eventId"] for b in bodies]
    # The first event failed three times: four attempts, one webhook-id, each signed.
    assert [r.status for r in every[:4]] == [500, 500, 500, 204]
    assert {r.headers["webhook-id"] for r in every[:4]} == {delivered[0].headers["webhook-id"]}
    for attempt in every:
        verified(secret, attempt)
    assert [(b["type"], b["data"]["externalCustomerId"]) for b in bodies] == [
        ("CUSTOMER_CREATED", "c-1"),
        ("CUSTOMER_UPDATED", "c-1"),
        ("KYC_VERIFICATION_STARTED", "c-1"),
        ("KYC_VERIFICATION_STATUS_CHANGED", "c-1"),
        ("CUSTOMER_CREATED", "c-2"),
    ]
    assert bodies[1]["data"]["changedFields"] == ["city"]
    assert bodies[3]["data"]["previousStatus"] == "PENDING"
    assert bodies[3]["data"]["verification"]["status"] == "VERIFIED"
    assert bodies[0]["data"]["actor"] == "key:tests"
    raw = b"".join(r.body for r in every).decode()
    assert personal_data_in([raw]) == []
    assert "Ann" not in raw

    # Every attempt is recorded, and the API tells it (the worker records the last outcome
    # after the receiver has answered: waited for, within a bound).
    listed = await settled_deliveries(gql, 5)
    assert [(d["status"], d["attempts"]) for d in reversed(listed)] == [("SUCCEEDED", 4)] + [
        ("SUCCEEDED", 1)
    ] * 4
    first = listed[-1]
    assert (first["lastResponseStatus"], first["lastError"], first["nextAttemptAt"]) == (
        204,
        None,
        None,
    )
    async with db.read() as session:
        attempts = list(
            await session.scalars(
                select(models.WebhookAttempt).order_by(col(models.WebhookAttempt.id))
            )
        )
    assert [a.response_status for a in attempts] == [500, 500, 500, 204, 204, 204, 204, 204]
    assert attempts[0].error == "answered HTTP 500"
    # The metrics count the events written and every attempt by what it left the delivery in.
    assert counted("customer_events_total", type="customer_created") - created == 2
    assert counted(attempts_metric, status="pending") - retried == 3
    assert counted(attempts_metric, status="succeeded") - succeeded == 5


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
async def test_a_delivery_that_keeps_failing_fails_for_good_and_the_next_one_goes(
    gql: GraphQLClient,
) -> None:
    with receiving(lambda n: 503 if n < 7 else 200) as receiver:
        made = await create_endpoint(gql, receiver.url)
        await gql.create("c-1")
        await gql.create("c-2")
        [arrived] = await asyncio.to_thread(receiver.wait_for, 1)
    body = verified(made["secret"], arrived)
    assert body["data"]["externalCustomerId"] == "c-2"
    failed = (await gql.run("webhook_endpoints", status="FAILED"))["webhookEndpoints"][0]
    [gave_up] = failed["deliveries"]["nodes"]
    assert (gave_up["attempts"], gave_up["lastResponseStatus"], gave_up["lastError"]) == (
        7,
        503,
        "answered HTTP 503",
    )
    assert gave_up["event"]["externalCustomerId"] == "c-1"


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
async def test_a_disabled_endpoint_and_types_it_does_not_want_get_nothing(
    gql: GraphQLClient,
) -> None:
    with receiving() as wanted, receiving() as off:
        await create_endpoint(gql, wanted.url, eventTypes=["CUSTOMER_DELETED"])
        disabled = (await create_endpoint(gql, off.url))["endpoint"]["id"]
        await gql.run("update_webhook_endpoint", input={"id": disabled, "enabled": False})
        await gql.create("c-1")
        await gql.run("delete_customer", input={"externalCustomerId": "c-1"})
        [only] = await asyncio.to_thread(wanted.wait_for, 1)
        assert json.loads(only.body)["type"] == "CUSTOMER_DELETED"
    assert off.received == []


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
async def test_deliveries_to_one_endpoint_reuse_its_connection(gql: GraphQLClient) -> None:
    """Each answer's body is read, so its connection serves the endpoint's next delivery
    rather than a new TCP (and TLS) handshake for every event."""
    with receiving(lambda _n: 200, answer=b'{"ok": true}') as receiver:
        await create_endpoint(gql, receiver.url)
        for n in range(4):
            await gql.create(f"c-{n}")
        await asyncio.to_thread(receiver.wait_for, 4)
    assert receiver.connections == 1


@pytest.mark.one_executor("delivery reads the event feed, which test_events proves alike on both")
@pytest.mark.parametrize("setting_overrides", [{**SETTINGS, "webhook_timeout_seconds": 3}])
async def test_a_receiver_dripping_its_answer_delays_only_its_own_endpoint(
    gql: GraphQLClient, db: Database
) -> None:
    """A byte of the answer's headers every second keeps a timeout per read (3 s) from ever
    firing: the attempt as a whole ends at its deadline, and the other endpoint, served
    beside it, gets each event meanwhile."""
    with dripping(every=1.0) as slow, receiving() as healthy:
        await create_endpoint(gql, slow.url)
        await create_endpoint(gql, healthy.url)
        for n in range(3):
            await gql.create(f"c-{n}")
            await asyncio.to_thread(healthy.wait_for, n + 1, 15)  # within 15 s of the change
            await asyncio.to_thread(slow.wait_for_request, 15)  # the slow one is mid-attempt
        ended = time.monotonic() + 15
        while not (attempts := await recorded_failures(db)) or not slow.closed:
            assert time.monotonic() < ended, "the dripping receiver's attempt never ended"
            await asyncio.sleep(0.05)
    assert {a.error for a in attempts} == {"no answer within 3 s"}
    # Ended at the deadline (3 s), by the sender's clock and by the receiver's, which
    # notices the hang-up between two bytes (a second apart).
    assert all(2900 <= a.duration_ms < 3000 + 3000 for a in attempts)
    assert slow.closed[0] - slow.opened[0] < 3 + 1 + 3


async def recorded_failures(db: Database) -> list[models.WebhookAttempt]:
    async with db.read() as session:
        failed = select(models.WebhookAttempt).where(col(models.WebhookAttempt.error).is_not(None))
        return list(await session.scalars(failed))


SERVER_ENV = {
    "WEBHOOK_SECRET_KEY": KEY,
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0.05,0.1,0.2,0.4,0.8",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
    "KYC_SWEEP_INTERVAL_SECONDS": "0",
}


def post(client: httpx.Client, name: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": operation(name), "variables": variables})
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_server_killed_with_deliveries_pending_delivers_them_after_restart(
    databases: Databases, backend: str
) -> None:
    url = databases.url_for(backend)
    auth = {"authorization": f"Bearer {TEST_API_KEY}"}
    # The first request is held without an answer: the server dies while it is in flight.
    with receiving(lambda n: None if n == 0 else 204) as receiver:
        try:
            with running_server(url, None, **SERVER_ENV) as server:
                with httpx.Client(base_url=server.url, headers=auth) as client:
                    made = post(client, "create_webhook_endpoint", input={"url": receiver.url})
                    secret = made["createWebhookEndpoint"]["secret"]
                    for n in range(5):
                        data = {"email": f"k-{n}@example.com"}
                        post(
                            client,
                            "create_customer",
                            input={"externalCustomerId": f"k-{n}", "data": data},
                        )
                    assert receiver.holding.wait(30)  # the first attempt is in flight ...
                server.stop(signal.SIGKILL)  # ... when the server dies
            with running_server(url, None, **SERVER_ENV) as again:
                delivered = receiver.wait_for(5, within=60)
                with httpx.Client(base_url=again.url, headers=auth) as client:
                    events = post(client, "customer_events", first=100)["customerEvents"]["nodes"]
        finally:
            databases.drop(url)
    ids = [Webhook(secret).verify(r.body, r.headers)["data"]["eventId"] for r in delivered]
    assert ids == [e["id"] for e in events]
