"""The KYC lifecycle: every cell of the transition table on the pure rule, then the mutations
(a few cells of each, start, expiry, concurrency) on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from db import kyc
from db.engine import Database
from db.models import KycStatus
from db.rules import Code
from server import Settings, expire_kyc
from tests.support.clock import Clock
from tests.support.graphql_client import GraphQLClient

pytestmark = pytest.mark.both_executors

TTL = timedelta(hours=24)
RECORD_ALLOWED = {("PENDING", "VERIFIED"), ("PENDING", "REJECTED"), ("PENDING", "UNDER_REVIEW")}
REVIEW_ALLOWED = {("UNDER_REVIEW", "APPROVE"), ("UNDER_REVIEW", "REJECT")}
DECIDED = {"APPROVE": "VERIFIED_MANUALLY", "REJECT": "REJECTED_MANUALLY"}


class Lifecycle:
    """Drives one customer's verification through the public mutations."""

    def __init__(self, gql: GraphQLClient, clock: Clock, db: Database, settings: Settings) -> None:
        self.gql, self.clock, self.db, self.settings = gql, clock, db, settings

    async def sweep(self) -> int:
        return await expire_kyc(self.db, self.settings, self.clock)

    async def verification_in(self, status: str, customer: str = "c-1") -> str:
        """The id of a new verification of `customer`, brought to `status` the way clients do."""
        if await self.gql.customer(customer) is None:
            await self.gql.create(customer)
        started = await self.gql.start_kyc(customer)
        verification_id: str = started["verification"]["id"]
        steps: dict[str, list[tuple[str, str]]] = {
            "PENDING": [],
            "VERIFIED": [("record", "VERIFIED")],
            "REJECTED": [("record", "REJECTED")],
            "UNDER_REVIEW": [("record", "UNDER_REVIEW")],
            "VERIFIED_MANUALLY": [("record", "UNDER_REVIEW"), ("review", "APPROVE")],
            "REJECTED_MANUALLY": [("record", "UNDER_REVIEW"), ("review", "REJECT")],
            "EXPIRED": [],
        }
        for kind, value in steps[status]:
            if kind == "record":
                payload = await self.gql.record_kyc(verification_id, value)
            else:
                payload = await self.gql.review_kyc(verification_id, value)
            assert payload["userErrors"] == []
        if status == "EXPIRED":
            self.clock.advance(TTL)
            assert await self.sweep() == 1
        history = await self.history(customer)
        assert history[-1]["status"] == status
        return verification_id

    async def history(self, customer: str = "c-1") -> list[dict[str, Any]]:
        found = await self.gql.customer(customer)
        assert found is not None
        verifications: list[dict[str, Any]] = found["kycVerifications"]
        return verifications


@pytest.fixture
def life(gql: GraphQLClient, clock: Clock, db: Database, settings: Settings) -> Lifecycle:
    return Lifecycle(gql, clock, db, settings)


def problems(payload: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def assert_unchanged(life: Lifecycle, before: list[dict[str, Any]]) -> None:
    assert await life.history() == before
    customer = await life.gql.customer("c-1")
    assert customer is not None
    assert customer["kycStatus"] == before[-1]["status"]


# Every cell of domain-rules.md's table, written out here on its own: (from, to, by whom).
ALLOWED = {
    (KycStatus.PENDING, KycStatus.VERIFIED, kyc.Actor.PROVIDER),
    (KycStatus.PENDING, KycStatus.REJECTED, kyc.Actor.PROVIDER),
    (KycStatus.PENDING, KycStatus.UNDER_REVIEW, kyc.Actor.PROVIDER),
    (KycStatus.PENDING, KycStatus.EXPIRED, kyc.Actor.EXPIRY),
    (KycStatus.UNDER_REVIEW, KycStatus.VERIFIED_MANUALLY, kyc.Actor.REVIEWER),
    (KycStatus.UNDER_REVIEW, KycStatus.REJECTED_MANUALLY, kyc.Actor.REVIEWER),
}


@pytest.mark.parametrize("actor", list(kyc.Actor))
@pytest.mark.parametrize("target", list(KycStatus))
@pytest.mark.parametrize("current", list(KycStatus))
def test_transition_matrix(current: KycStatus, target: KycStatus, actor: kyc.Actor) -> None:
    """The rule itself, cell by cell, with no database: the mutations below only route to it."""
    problems = kyc.check_transition(current, target, actor)
    if (current, target, actor) in ALLOWED:
        assert problems == []
    else:
        [problem] = problems
        assert (problem.field, problem.code) == ("verification_id", Code.INVALID_TRANSITION)
        assert current in problem.message


# Through the mutations, on both backends: each allowed cell of the two mutations, and refusals
# for a final status, another actor's move and a status that expired.
@pytest.mark.parametrize(
    ("current", "target"),
    [
        *[("PENDING", target) for target in ("VERIFIED", "REJECTED", "UNDER_REVIEW")],
        ("VERIFIED", "REJECTED"),
        ("PENDING", "VERIFIED_MANUALLY"),
        ("UNDER_REVIEW", "VERIFIED"),
        ("EXPIRED", "VERIFIED"),
    ],
)
async def test_record_result(life: Lifecycle, current: str, target: str) -> None:
    verification_id = await life.verification_in(current)
    before = await life.history()
    life.clock.advance(timedelta(seconds=1))
    payload = await life.gql.record_kyc(verification_id, target)
    if (current, target) in RECORD_ALLOWED:
        assert payload["userErrors"] == []
        assert payload["verification"]["status"] == target
        assert payload["verification"]["updatedAt"] == "2025-06-05T04:57:12.151Z"
        c1 = await life.gql.customer("c-1")
        assert c1 is not None
        assert payload["customer"] == {
            "id": c1["id"],
            "externalCustomerId": "c-1",
            "kycStatus": target,
        }
        assert [v["status"] for v in await life.history()] == [target]
    else:
        assert problems(payload) == [(["input", "verificationId"], "INVALID_TRANSITION")]
        assert current in payload["userErrors"][0]["message"]
        assert (payload["verification"], payload["customer"]) == (None, None)
        await assert_unchanged(life, before)


@pytest.mark.parametrize(
    ("current", "decision"),
    [
        ("UNDER_REVIEW", "APPROVE"),
        ("UNDER_REVIEW", "REJECT"),
        ("PENDING", "APPROVE"),
        ("VERIFIED_MANUALLY", "REJECT"),
    ],
)
async def test_review(life: Lifecycle, current: str, decision: str) -> None:
    verification_id = await life.verification_in(current)
    before = await life.history()
    payload = await life.gql.review_kyc(verification_id, decision)
    if (current, decision) in REVIEW_ALLOWED:
        assert payload["userErrors"] == []
        assert payload["verification"]["status"] == DECIDED[decision]
        assert payload["customer"]["kycStatus"] == DECIDED[decision]
        assert [v["status"] for v in await life.history()] == [DECIDED[decision]]
    else:
        assert problems(payload) == [(["input", "verificationId"], "INVALID_TRANSITION")]
        assert current in payload["userErrors"][0]["message"]
        await assert_unchanged(life, before)


def test_transition_messages_name_the_current_and_the_allowed_statuses() -> None:
    [problem] = kyc.check_transition(
        KycStatus.PENDING, KycStatus.VERIFIED_MANUALLY, kyc.Actor.REVIEWER
    )
    assert problem.message == (
        "The verification is PENDING; it can move only to VERIFIED (by the verification "
        "provider), REJECTED (by the verification provider), UNDER_REVIEW (by the verification "
        "provider), EXPIRED (by the expiry sweep)."
    )
    [final] = kyc.check_transition(KycStatus.VERIFIED, KycStatus.PENDING, kyc.Actor.PROVIDER)
    assert (
        final.message
        == "The verification is VERIFIED, which is final; it can move to nothing else."
    )


@pytest.mark.parametrize(
    ("global_id", "why"),
    [("nope", "malformed"), ("S3ljVmVyaWZpY2F0aW9uOjk5", "unknown key"), (None, "a customer's id")],
)
async def test_unknown_verification_is_not_found(
    life: Lifecycle, global_id: str | None, why: str
) -> None:
    created = await life.gql.create("c-1")
    payload = await life.gql.record_kyc(global_id or created["customer"]["id"], "VERIFIED")
    assert problems(payload) == [(["input", "verificationId"], "NOT_FOUND")], why
    payload = await life.gql.review_kyc(global_id or created["customer"]["id"], "APPROVE")
    assert problems(payload) == [(["input", "verificationId"], "NOT_FOUND")], why


# -- startKycVerification ----------------------------------------------------------------------


async def test_start_with_no_history_makes_a_pending_one(life: Lifecycle) -> None:
    created = (await life.gql.create("c-1"))["customer"]
    payload = await life.gql.start_kyc("c-1")
    assert payload["userErrors"] == []
    verification = payload["verification"]
    assert (verification["type"], verification["status"]) == ("PROOF_OF_ID", "PENDING")
    assert verification["createdAt"] == verification["updatedAt"] == "2025-06-05T04:57:11.151Z"
    assert payload["customer"] == {
        "id": created["id"],
        "externalCustomerId": "c-1",
        "kycStatus": "PENDING",
    }
    assert await life.history() == [verification]


@pytest.mark.parametrize("current", ["PENDING", "UNDER_REVIEW"])
async def test_start_returns_the_active_one(life: Lifecycle, current: str) -> None:
    verification_id = await life.verification_in(current)
    before = await life.history()
    payload = await life.gql.start_kyc("c-1")
    assert payload["userErrors"] == []
    assert payload["verification"]["id"] == verification_id
    assert payload["verification"]["status"] == current
    assert await life.history() == before


@pytest.mark.parametrize("current", ["REJECTED", "EXPIRED", "REJECTED_MANUALLY"])
async def test_start_after_a_failed_one_makes_a_new_one(life: Lifecycle, current: str) -> None:
    old_id = await life.verification_in(current)
    life.clock.advance(timedelta(minutes=5))
    payload = await life.gql.start_kyc("c-1")
    assert payload["userErrors"] == []
    assert payload["verification"]["id"] != old_id
    assert payload["customer"]["kycStatus"] == "PENDING"
    history = await life.history()
    assert [(v["id"], v["status"]) for v in history] == [
        (old_id, current),
        (payload["verification"]["id"], "PENDING"),
    ]


@pytest.mark.parametrize("current", ["VERIFIED", "VERIFIED_MANUALLY"])
async def test_start_when_verified_is_an_invalid_transition(life: Lifecycle, current: str) -> None:
    await life.verification_in(current)
    before = await life.history()
    payload = await life.gql.start_kyc("c-1")
    assert problems(payload) == [(["input", "externalCustomerId"], "INVALID_TRANSITION")]
    assert current in payload["userErrors"][0]["message"]
    assert payload["verification"] is None
    await assert_unchanged(life, before)


async def test_start_for_an_unknown_customer_is_not_found(life: Lifecycle) -> None:
    payload = await life.gql.start_kyc("nobody")
    assert problems(payload) == [(["input", "externalCustomerId"], "NOT_FOUND")]


async def test_status_follows_the_newest_and_history_keeps_order(life: Lifecycle) -> None:
    first = await life.verification_in("REJECTED")
    life.clock.advance(timedelta(minutes=1))
    second = await life.verification_in("REJECTED_MANUALLY")
    life.clock.advance(timedelta(minutes=1))
    third = await life.verification_in("VERIFIED")
    customer = await life.gql.customer("c-1")
    assert customer is not None
    assert customer["kycStatus"] == "VERIFIED"
    history = customer["kycVerifications"]
    assert [(v["id"], v["status"]) for v in history] == [
        (first, "REJECTED"),
        (second, "REJECTED_MANUALLY"),
        (third, "VERIFIED"),
    ]
    assert [v["createdAt"] for v in history] == sorted(v["createdAt"] for v in history)


# -- expiry ------------------------------------------------------------------------------------


async def test_sweep_expires_old_pending_and_leaves_the_rest(life: Lifecycle) -> None:
    old = await life.verification_in("PENDING", "old")
    decided = await life.verification_in("UNDER_REVIEW", "decided")
    life.clock.advance(TTL - timedelta(milliseconds=1))
    young = await life.verification_in("PENDING", "young")
    assert await life.sweep() == 0
    life.clock.advance(timedelta(milliseconds=1))
    assert await life.sweep() == 1
    assert await life.sweep() == 0  # idempotent

    [expired] = await life.history("old")
    assert (expired["id"], expired["status"]) == (old, "EXPIRED")
    assert expired["updatedAt"] == "2025-06-06T04:57:11.151Z"  # createdAt + ttl
    assert [(v["id"], v["status"]) for v in await life.history("decided")] == [
        (decided, "UNDER_REVIEW")
    ]
    assert [(v["id"], v["status"]) for v in await life.history("young")] == [(young, "PENDING")]
    assert (await life.gql.customer("old") or {})["kycStatus"] == "EXPIRED"


async def test_reads_apply_the_ttl_before_the_sweep_runs(life: Lifecycle) -> None:
    verification_id = await life.verification_in("PENDING")
    life.clock.advance(TTL)
    customer = await life.gql.customer("c-1")
    assert customer is not None
    assert customer["kycStatus"] == "EXPIRED"
    [verification] = customer["kycVerifications"]
    assert verification["status"] == "EXPIRED"
    assert verification["updatedAt"] == "2025-06-06T04:57:11.151Z"
    node = (await life.gql.run("node", id=verification_id))["node"]
    assert node["status"] == "EXPIRED"
    # The provider's late answer is refused, and what the sweep then writes matches the read.
    late = await life.gql.record_kyc(verification_id, "VERIFIED")
    assert problems(late) == [(["input", "verificationId"], "INVALID_TRANSITION")]
    assert "EXPIRED" in late["userErrors"][0]["message"]
    assert await life.sweep() == 1
    assert await life.history() == [verification]


async def test_start_after_an_unswept_expiry_writes_it_down(life: Lifecycle) -> None:
    old_id = await life.verification_in("PENDING")
    life.clock.advance(TTL + timedelta(hours=1))
    payload = await life.gql.start_kyc("c-1")
    assert payload["verification"]["id"] != old_id
    assert [v["status"] for v in await life.history()] == ["EXPIRED", "PENDING"]
    assert await life.sweep() == 0  # nothing left for the sweep: exactly one PENDING


async def test_two_sweeps_at_once_expire_each_verification_once(life: Lifecycle) -> None:
    for n in range(5):
        await life.verification_in("PENDING", f"c-{n}")
    life.clock.advance(TTL)
    counts = await asyncio.gather(life.sweep(), life.sweep())
    assert sum(counts) == 5
    assert sorted(counts) in ([0, 5], [5, 0])


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_results_move_a_verification_once(life: Lifecycle) -> None:
    verification_id = await life.verification_in("PENDING")
    outcomes = ["VERIFIED", "REJECTED", "UNDER_REVIEW"] * 2
    payloads = await asyncio.gather(*(life.gql.record_kyc(verification_id, s) for s in outcomes))
    applied = [p for p in payloads if not p["userErrors"]]
    assert len(applied) == 1
    refused = [problems(p) for p in payloads if p["userErrors"]]
    assert refused == [[(["input", "verificationId"], "INVALID_TRANSITION")]] * 5
    winner = applied[0]["verification"]["status"]
    assert [v["status"] for v in await life.history()] == [winner]
    assert (await life.gql.customer("c-1") or {})["kycStatus"] == winner


async def test_concurrent_starts_make_one_pending_verification(life: Lifecycle) -> None:
    await life.gql.create("c-1")
    payloads = await asyncio.gather(*(life.gql.start_kyc("c-1") for _ in range(10)))
    assert [p["userErrors"] for p in payloads] == [[]] * 10
    assert len({p["verification"]["id"] for p in payloads}) == 1
    assert [v["status"] for v in await life.history()] == ["PENDING"]
