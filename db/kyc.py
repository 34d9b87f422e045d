"""The KYC verification lifecycle: the transition table and every write that moves a status.

Every status change goes through `TRANSITIONS`, in the same transaction as the read that
decided it (the row is locked first: `FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite),
so two concurrent requests can never both move one verification.

LOCK ORDER. A write that locks both a customer and one of its verifications locks the
customer first: a start locks the customer, then may expire its newest verification; a
result or review locks the verification's customer, then the verification; the sweep locks
the customers of a batch, then their verifications, and so do a customer's delete and its
cascade. Two writes that took them in opposite orders could each wait for the other, and
PostgreSQL would abort one of them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from db import events
from db.customers import not_found
from db.events import NewEvent
from db.models import Customer, EventType, KycStatus, KycType, KycVerification
from db.rules import Code, Problem

DEFAULT_TTL = timedelta(hours=24)


class Actor(enum.StrEnum):
    """Who may make a transition; the value is how messages name them."""

    PROVIDER = "the verification provider"
    REVIEWER = "an operator's review"
    EXPIRY = "the expiry sweep"


# The one table of allowed transitions: from a status, to a status, by whom. Anything not
# here answers INVALID_TRANSITION and changes nothing.
TRANSITIONS: Mapping[KycStatus, Mapping[KycStatus, Actor]] = {
    KycStatus.PENDING: {
        KycStatus.VERIFIED: Actor.PROVIDER,
        KycStatus.REJECTED: Actor.PROVIDER,
        KycStatus.UNDER_REVIEW: Actor.PROVIDER,
        KycStatus.EXPIRED: Actor.EXPIRY,
    },
    KycStatus.UNDER_REVIEW: {
        KycStatus.VERIFIED_MANUALLY: Actor.REVIEWER,
        KycStatus.REJECTED_MANUALLY: Actor.REVIEWER,
    },
}
# startKycVerification: with one of these newest, it returns that one instead of a new one ...
ACTIVE = frozenset({KycStatus.PENDING, KycStatus.UNDER_REVIEW})
# ... and with one of these newest, the customer is verified and it refuses.
VERIFIED = frozenset({KycStatus.VERIFIED, KycStatus.VERIFIED_MANUALLY})


# Told of every status change as it is written: (from, to, how many); None as `from` is a new
# verification. The server counts them in its metrics (db/ stays free of any metrics library).
TransitionObserver = Callable[[KycStatus | None, KycStatus, int], None]
transition_observers: list[TransitionObserver] = []


def _notify(before: KycStatus | None, after: KycStatus, count: int = 1) -> None:
    for observe in transition_observers:
        observe(before, after, count)


@dataclass
class VerificationOutcome:
    """What a KYC write did: the verification and its customer, or the problems that stopped it."""

    verification: KycVerification | None = None
    customer: Customer | None = None
    problems: list[Problem] = field(default_factory=list)


def effective_status(
    status: KycStatus, started_at: datetime | None, now: datetime, ttl: timedelta
) -> KycStatus:
    """The status as the rules have it now: a PENDING older than the ttl has EXPIRED.

    Reads apply this, so nobody sees a stale PENDING between two sweeps.
    """
    if status is KycStatus.PENDING and started_at is not None and started_at <= now - ttl:
        return KycStatus.EXPIRED
    return status


def effective_updated_at(row: KycVerification, now: datetime, ttl: timedelta) -> datetime:
    """When the status last changed, counting an expiry that the sweep has not written yet."""
    if effective_status(row.status, row.created_at, now, ttl) is not row.status:
        return row.created_at + ttl
    return row.updated_at


def check_transition(current: KycStatus, target: KycStatus, actor: Actor) -> list[Problem]:
    """No problem when the table lets `actor` move `current` to `target`; else why not."""
    allowed = TRANSITIONS.get(current, {})
    if allowed.get(target) is actor:
        return []
    if allowed:
        options = ", ".join(f"{to} (by {who})" for to, who in allowed.items())
        message = f"The verification is {current}; it can move only to {options}."
    else:
        message = f"The verification is {current}, which is final; it can move to nothing else."
    return [Problem("verification_id", Code.INVALID_TRANSITION, message)]


async def list_verifications(
    session: AsyncSession, customer_ids: Sequence[int]
) -> dict[int, list[KycVerification]]:
    """Every verification of these customers, oldest first, by customer id: one query."""
    rows = await session.scalars(
        select(KycVerification)
        .where(col(KycVerification.customer_id).in_(customer_ids))
        .order_by(col(KycVerification.customer_id), col(KycVerification.id))
    )
    found: dict[int, list[KycVerification]] = {id_: [] for id_ in customer_ids}
    for row in rows:
        found[row.customer_id].append(row)
    return found


async def get_verifications(
    session: AsyncSession, ids: Sequence[int]
) -> list[KycVerification | None]:
    """The verifications with these primary keys, in the keys' order, None where there is none."""
    rows = await session.scalars(select(KycVerification).where(col(KycVerification.id).in_(ids)))
    by_id = {row.id: row for row in rows}
    return [by_id.get(id_) for id_ in ids]


async def start_verification(
    session: AsyncSession,
    external_customer_id: str,
    kind: KycType,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    *,
    who: str,
) -> VerificationOutcome:
    """A new PENDING verification, the active one if there is one, or why neither.

    NOT_FOUND for an unknown customer; INVALID_TRANSITION when the newest is verified. A new
    one records KYC_VERIFICATION_STARTED by `who` (after the expiry of the newest, when this
    is what writes that down).
    """
    customer = await session.scalar(
        select(Customer)
        .where(col(Customer.external_customer_id) == external_customer_id)
        .with_for_update()  # one start at a time per customer
    )
    if customer is None:
        return VerificationOutcome(problems=[not_found(external_customer_id)])
    assert customer.id is not None
    newest = await session.scalar(
        select(KycVerification)
        .where(col(KycVerification.customer_id) == customer.id)
        .order_by(col(KycVerification.id).desc())
        .limit(1)
    )
    recorded: list[NewEvent] = []
    if newest is not None:
        status = effective_status(newest.status, newest.created_at, now, ttl)
        if status in ACTIVE:
            return VerificationOutcome(verification=newest, customer=customer)
        if status in VERIFIED:
            return VerificationOutcome(
                problems=[
                    Problem(
                        "external_customer_id",
                        Code.INVALID_TRANSITION,
                        f"The customer's newest verification is {status}; a verified customer "
                        "needs no new verification.",
                    )
                ]
            )
        if status is not newest.status:  # expired on read: write it down before the new one
            previous = newest.status
            await _set_status(session, newest, status, newest.created_at + ttl)
            recorded.append(_status_changed(customer.external_customer_id, newest, previous))

    verification = KycVerification(
        customer_id=customer.id,
        type=kind,
        status=KycStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(verification)
    await session.flush()
    _notify(None, KycStatus.PENDING)
    await _refresh_customer_status(session, [customer.id])
    await session.refresh(customer)
    started = EventType.KYC_VERIFICATION_STARTED
    recorded.append(NewEvent(started, customer.external_customer_id, who, now, (), verification))
    await events.record(session, recorded, now)
    return VerificationOutcome(verification=verification, customer=customer)


async def move_verification(
    session: AsyncSession,
    verification_id: int,
    target: KycStatus,
    actor: Actor,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    *,
    who: str,
) -> VerificationOutcome:
    """Move a verification to `target` if the table lets `actor` do so, recording
    KYC_VERIFICATION_STATUS_CHANGED by `who`; else why not."""
    # Its customer is locked first, then the verification: every KYC write takes the two in
    # this order (LOCK ORDER above), so none waits for a lock that another holds while
    # waiting for one of its own (a PostgreSQL deadlock, which aborts one of them).
    owner = await session.scalar(
        sa_select(col(KycVerification.customer_id)).where(
            col(KycVerification.id) == verification_id
        )
    )
    if owner is not None:
        await session.execute(
            sa_select(col(Customer.id)).where(col(Customer.id) == owner).with_for_update()
        )
    verification = await session.scalar(
        select(KycVerification).where(col(KycVerification.id) == verification_id).with_for_update()
    )
    if verification is None:  # none, or deleted with its customer meanwhile
        return VerificationOutcome(
            problems=[
                Problem("verification_id", Code.NOT_FOUND, "There is no verification with this id.")
            ]
        )
    current = effective_status(verification.status, verification.created_at, now, ttl)
    problems = check_transition(current, target, actor)
    if problems:
        return VerificationOutcome(problems=problems)
    await _set_status(session, verification, target, now)
    customer = await session.get(Customer, verification.customer_id, populate_existing=True)
    assert customer is not None
    changed = _status_changed(customer.external_customer_id, verification, current, who)
    await events.record(session, [changed], now)
    return VerificationOutcome(verification=verification, customer=customer)


async def expire_stale(
    session: AsyncSession, now: datetime, ttl: timedelta = DEFAULT_TTL, batch: int = 500
) -> int:
    """Expire PENDING verifications older than the ttl; returns how many this call expired.

    Idempotent and safe to run in several processes at once: each row is claimed with a
    conditional UPDATE, so a row that another sweep expired first is not counted again, and
    its KYC_VERIFICATION_STATUS_CHANGED (actor `system:expiry-sweep`, at the moment it
    expired) is recorded once. The events are recorded once, after the last batch, so the
    counter is the last lock taken.

    The customers of a batch are locked before their verifications (LOCK ORDER above); one
    that another write holds is skipped, not waited for: that write is a start, a result or
    a delete of the same customer, and the next sweep (or the start itself) writes the
    expiry down.
    """
    expired = 0
    recorded: list[NewEvent] = []
    after = 0  # batches go up the ids: skipped rows are not read again
    while True:
        stale = (
            await session.execute(
                sa_select(
                    col(KycVerification.id),
                    col(KycVerification.customer_id),
                    col(KycVerification.created_at),
                )
                .where(
                    col(KycVerification.status) == KycStatus.PENDING,
                    col(KycVerification.created_at) <= now - ttl,
                    col(KycVerification.id) > after,
                )
                .order_by(col(KycVerification.id))
                .limit(batch)
            )
        ).all()
        owners = {customer_id for _, customer_id, _ in stale}
        locked = set(
            (
                await session.execute(
                    sa_select(col(Customer.id))
                    .where(col(Customer.id).in_(owners))
                    .order_by(col(Customer.id))
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        customer_ids = []
        for id_, customer_id, created_at in stale:
            if customer_id not in locked:
                continue
            claimed = await session.execute(
                update(KycVerification)
                .where(
                    col(KycVerification.id) == id_,
                    col(KycVerification.status) == KycStatus.PENDING,
                )
                .values(status=KycStatus.EXPIRED, updated_at=created_at + ttl)
                .returning(KycVerification)
            )
            row = claimed.scalar_one_or_none()
            if row is not None:
                expired += 1
                customer_ids.append(row.customer_id)
                recorded.append(_status_changed("", row, KycStatus.PENDING))
        await _refresh_customer_status(session, customer_ids)
        if len(stale) < batch:
            break
        last = stale[-1][0]
        assert last is not None  # a primary key
        after = last
    if expired:
        _notify(KycStatus.PENDING, KycStatus.EXPIRED, expired)
    await events.record(session, await _named(session, recorded), now)
    return expired


def _status_changed(
    external_customer_id: str,
    verification: KycVerification,
    previous: KycStatus,
    who: str = events.EXPIRY_SWEEP,
) -> NewEvent:
    """KYC_VERIFICATION_STATUS_CHANGED for a verification just moved from `previous`."""
    return NewEvent(
        EventType.KYC_VERIFICATION_STATUS_CHANGED,
        external_customer_id,
        who,
        verification.updated_at,
        (),
        verification,
        previous,
    )


async def _named(session: AsyncSession, recorded: list[NewEvent]) -> list[NewEvent]:
    """The events with their customers' externalCustomerIds filled in (one query)."""
    ids = {event.verification.customer_id for event in recorded if event.verification}
    if not ids:
        return recorded
    names = dict(
        (
            await session.execute(
                sa_select(col(Customer.id), col(Customer.external_customer_id)).where(
                    col(Customer.id).in_(ids)
                )
            )
        ).all()
    )
    return [
        replace(event, external_customer_id=names[event.verification.customer_id])
        for event in recorded
        if event.verification
    ]


async def _set_status(
    session: AsyncSession, verification: KycVerification, status: KycStatus, at: datetime
) -> None:
    before = verification.status
    verification.status = status
    verification.updated_at = at
    await session.flush()
    _notify(before, status)
    await _refresh_customer_status(session, [verification.customer_id])


async def _refresh_customer_status(session: AsyncSession, customer_ids: Sequence[int]) -> None:
    """Copy the newest verification's status and start onto each customer's row."""
    if not customer_ids:
        return
    newest = aliased(KycVerification)

    def of_newest(column: Any) -> Any:
        return (
            sa_select(column)
            .where(col(newest.customer_id) == col(Customer.id))
            .order_by(col(newest.id).desc())
            .limit(1)
            .correlate(Customer)
            .scalar_subquery()
        )

    await session.execute(
        update(Customer)
        .where(col(Customer.id).in_(customer_ids))
        .values(kyc_status=of_newest(newest.status), kyc_started_at=of_newest(newest.created_at))
        .execution_options(synchronize_session=False)
    )
