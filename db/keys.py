"""API keys: made at random, stored only as a hash, checked in constant time, with scopes."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from db import events
from db.models import ApiKey
from db.pages import Direction, Ordering, Page, fetch_page
from db.rules import Code, Problem

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
    KEYS_MANAGE = "keys:manage"


# Every scope a key can hold (customers:self needs a customer, which only a token names).
ALL_SCOPES = frozenset(Scope) - {Scope.CUSTOMERS_SELF}


# The actors of keys made and revoked from the server's own command line and at first start.
CLI = events.actor(events.ActorKind.SYSTEM, "cli")
BOOTSTRAP = events.actor(events.ActorKind.SYSTEM, "bootstrap")
NAME_CHARACTERS = 100  # the column's length
# A key's own bucket: from 1 point, restoring more than nothing, within what the settings allow.
MAX_BUCKET = 1_000_000_000


class KeyProblem(ValueError):
    """A key operation that cannot be done (the name is taken, no such key); says why."""


@dataclass(frozen=True)
class NewKey:
    """A key just made: its row, and the secret, which exists nowhere else from now on."""

    row: ApiKey
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's name (a token's subject) and what it may do."""

    name: str
    scopes: frozenset[Scope]
    # The externalCustomerId of a customers:self token: what that scope lets it touch.
    customer: str | None = None
    issuer: str | None = None  # a token's identity provider; None for an API key
    # The key's own rate-limit bucket (web/rate_limits.py); None: the server's defaults.
    max_cost: int | None = None
    restore_rate: float | None = None

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


def bucket_problems(max_cost: int | None, restore_rate: float | None) -> list[Problem]:
    """What is wrong with a key's own rate limits: a maximum cost below 1 or a restore rate
    not above 0 (or either past MAX_BUCKET, or not a number)."""
    problems = []
    if max_cost is not None and not 1 <= max_cost <= MAX_BUCKET:
        problems.append(
            Problem("max_cost", Code.INVALID, f"Use a whole number from 1 to {MAX_BUCKET}.")
        )
    if restore_rate is not None and not 0 < restore_rate <= MAX_BUCKET:  # NaN fails it too
        problems.append(
            Problem(
                "restore_rate",
                Code.INVALID,
                f"Use a number of points a second above 0, at most {MAX_BUCKET}.",
            )
        )
    return problems


def key_problems(
    name: str, scopes: Sequence[str], granter: frozenset[Scope] | None
) -> list[Problem]:
    """What is wrong with a new key's name and scopes: a blank or overlong name, no scope, a
    scope no key can hold, or one that its maker (`granter`; None for the CLI) lacks."""
    problems = []
    if not name.strip():
        problems.append(Problem("name", Code.REQUIRED, "Give the key a name."))
    elif len(name.strip()) > NAME_CHARACTERS:
        problems.append(
            Problem("name", Code.TOO_LONG, f"Use at most {NAME_CHARACTERS} characters.")
        )
    if not scopes:
        problems.append(Problem("scopes", Code.REQUIRED, "Give the key at least one scope."))
    for scope in dict.fromkeys(scopes):
        if scope not in ALL_SCOPES:
            known = ", ".join(sorted(ALL_SCOPES))
            problems.append(
                Problem("scopes", Code.INVALID, f"{scope!r} is not a key's scope; use {known}.")
            )
        elif granter is not None and scope not in granter:
            problems.append(
                Problem(
                    "scopes",
                    Code.INVALID,
                    f"You may not grant {scope}: a key can hold only scopes its maker holds.",
                )
            )
    return problems


async def make_key(
    session: AsyncSession,
    name: str,
    scopes: Sequence[str],
    now: datetime,
    *,
    created_by: str,
    granter: frozenset[Scope] | None = None,
    max_cost: int | None = None,
    restore_rate: float | None = None,
) -> NewKey | list[Problem]:
    """Store a new key made by `created_by`, who holds `granter` (None: any scope), with its
    own rate limits if given, and return it with its secret; or the problems with its name,
    scopes and limits (TAKEN for a name in use, revoked keys' names included)."""
    problems = key_problems(name, scopes, granter) + bucket_problems(max_cost, restore_rate)
    if problems:
        return problems
    key = new_key()
    row = ApiKey(
        name=name.strip(),
        prefix=key[:SHOWN_CHARACTERS],
        key_hash=hash_key(key),
        scopes=" ".join(sorted(set(scopes))),
        created_at=now,
        created_by=created_by,
        max_cost=max_cost,
        restore_rate=restore_rate,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:  # the unique name: race-safe where a look-up first would not be
        return [Problem("name", Code.TAKEN, f"A key named {name.strip()!r} exists already.")]
    return NewKey(row, key)


async def create_key(
    session: AsyncSession,
    name: str,
    scopes: Iterable[Scope],
    now: datetime,
    created_by: str = CLI,
    *,
    max_cost: int | None = None,
    restore_rate: float | None = None,
) -> str:
    """Store a new key with any scopes and return it (KeyProblem saying why it cannot be):
    `make_key` for the command line, the first start and scripts."""
    made = await make_key(
        session,
        name,
        list(scopes),
        now,
        created_by=created_by,
        max_cost=max_cost,
        restore_rate=restore_rate,
    )
    if isinstance(made, list):
        raise KeyProblem(" ".join(problem.message for problem in made))
    return made.secret


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).order_by(col(ApiKey.created_at)))).all()


_BY_ID: tuple[Any, ...] = (col(ApiKey.id),)
OLDEST_FIRST = Ordering("API_KEYS", _BY_ID, Direction.ASC)


async def page_keys(
    session: AsyncSession, *, first: int, after: str | None, secret: bytes
) -> Page[ApiKey]:
    """A page of every key, revoked ones included, oldest first; PageError for a bad cursor."""
    every = select(ApiKey)
    return await fetch_page(session, every, OLDEST_FIRST, first=first, after=after, secret=secret)


async def revoke_key(
    session: AsyncSession, name: str, now: datetime, revoked_by: str = CLI
) -> ApiKey | Problem:
    """Revoke the active key of this name, recording who did; the key as it is now, or
    NOT_FOUND when no active key has the name (one of two racing revocations gets it)."""
    row: ApiKey | None = await session.scalar(
        update(ApiKey)
        .where(col(ApiKey.name) == name.strip(), col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now, revoked_by=revoked_by)
        .returning(ApiKey)
    )
    if row is None:
        return Problem("name", Code.NOT_FOUND, f"There is no active key named {name!r}.")
    return row


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
    scopes = frozenset(Scope(s) for s in row.scopes.split())
    return Principal(row.name, scopes, max_cost=row.max_cost, restore_rate=row.restore_rate)


async def touch(session: AsyncSession, key_id: int, now: datetime) -> None:
    """Record that the key was just used."""
    await session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now))
