"""API keys: made at random, stored only as a hash, checked in constant time, with scopes."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from db import events
from db.models import ApiKey

KEY_PREFIX = "cak_"  # "customer API key": makes a leaked key easy to recognise and search for
SHOWN_CHARACTERS = 12
# last_used_at is written at most this often per key: a write on every request would make
# every read take SQLite's write lock.
LAST_USED_PRECISION = timedelta(minutes=1)


class Scope(enum.StrEnum):
    """What a key may do."""

    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    KYC_PROVIDER = "kyc:provider"
    KYC_REVIEW = "kyc:review"
    # Only in an identity provider's token that names the customer: that customer alone.
    CUSTOMERS_SELF = "customers:self"
    WEBHOOKS_MANAGE = "webhooks:manage"


# Every scope a key can hold (customers:self needs a customer, which only a token names).
ALL_SCOPES = frozenset(Scope) - {Scope.CUSTOMERS_SELF}


class KeyProblem(ValueError):
    """A key operation that cannot be done (the name is taken, no such key); says why."""


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's name (a token's subject) and what it may do."""

    name: str
    scopes: frozenset[Scope]
    # The externalCustomerId of a customers:self token: what that scope lets it touch.
    customer: str | None = None
    issuer: str | None = None  # a token's identity provider; None for an API key

    @property
    def actor(self) -> str:
        """What the events of this principal's changes name as their actor."""
        if self.issuer is None:
            return events.actor(events.ActorKind.KEY, self.name)
        return events.actor(events.ActorKind.TOKEN, self.name, issuer=self.issuer)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new key: the prefix and 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession, name: str, scopes: Iterable[Scope], now: datetime
) -> str:
    """Store a new key and return it: the only time it exists outside the caller's hands."""
    if not name.strip():
        raise KeyProblem("Give the key a name.")
    chosen = sorted(set(scopes))
    if not chosen:
        raise KeyProblem("Give the key at least one scope.")
    key = new_key()
    row = ApiKey(
        name=name.strip(),
        prefix=key[:SHOWN_CHARACTERS],
        key_hash=hash_key(key),
        scopes=" ".join(chosen),
        created_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise KeyProblem(f"A key named {name!r} exists already.") from None
    return key


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).order_by(col(ApiKey.created_at)))).all()


async def revoke_key(session: AsyncSession, name: str, now: datetime) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(col(ApiKey.name) == name, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise KeyProblem(f"There is no active key named {name!r}.")


async def count_keys(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one()


async def find_active_key_by_hash(session: AsyncSession, digest: str) -> ApiKey | None:
    """The stored key whose hash is `digest`, unless it is unknown or revoked."""
    row = await session.scalar(select(ApiKey).where(col(ApiKey.key_hash) == digest))
    # The look-up is by hash, so its timing says nothing about the key; the comparison
    # confirms the match without an early exit.
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return row


def principal_of(row: ApiKey) -> Principal:
    return Principal(row.name, frozenset(Scope(s) for s in row.scopes.split()))


async def touch(session: AsyncSession, key_id: int, now: datetime) -> None:
    """Record that the key was just used."""
    await session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now))
