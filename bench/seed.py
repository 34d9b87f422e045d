"""Fill a database with N realistic, valid customers and their KYC verifications, quickly.

    python -m bench.seed --count 1000000 [--database-url URL]

Every customer passes `db.rules` (the same check every write runs) and is stored in the
normalised form the server would store; verifications follow the transition table, and each
customer's denormalised KYC columns match its newest verification. Rows go in with bulk
inserts in large transactions; the database's own defaults (WAL, synchronous=FULL) apply.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlmodel import SQLModel
from tqdm import tqdm

from db import customers, migrate, rules
from db.engine import Database
from db.models import Customer, KycStatus, KycType, KycVerification

FIRST = ["Ann", "Bob", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Inès", "Jack",
         "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
         "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoë"]  # fmt: skip
LAST = ["Lee", "Smith", "García", "Müller", "Nguyen", "Okafor", "Rossi", "Kowalski", "Tanaka",
        "Silva", "Johnson", "Dubois", "Novak", "Haddad", "Kim", "O'Brien", "Berg",
        "Patel"]  # fmt: skip
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "corp.example"]
CITIES = [("New York", "NY", "100"), ("Boston", "MA", "021"), ("Austin", "TX", "787"),
          ("Denver", "CO", "802"), ("Seattle", "WA", "981"), ("Miami", "FL", "331"),
          ("Chicago", "IL", "606"), ("San Juan", "PR", "009")]  # fmt: skip
AREA_CODES = ["201", "212", "305", "312", "415", "512", "617", "720", "206", "787"]
STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Park Rd", "Pine St"]
# The newest verification's status, weighted roughly as a live system has them; the first
# share is "no verification at all". UNDER_REVIEW is the operators' review queue.
OUTCOMES: list[tuple[KycStatus | None, int]] = [
    (None, 30),
    (KycStatus.VERIFIED, 45),
    (KycStatus.PENDING, 5),
    (KycStatus.UNDER_REVIEW, 3),
    (KycStatus.REJECTED, 6),
    (KycStatus.EXPIRED, 6),
    (KycStatus.VERIFIED_MANUALLY, 3),
    (KycStatus.REJECTED_MANUALLY, 2),
]
FAILED = [KycStatus.REJECTED, KycStatus.EXPIRED, KycStatus.REJECTED_MANUALLY]
BATCH = 5_000


def raw_customer(n: int, rng: random.Random) -> tuple[str, dict[str, str | None]]:
    """The n-th customer as a client would send it (unnormalised, some fields left out)."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, zip_prefix = rng.choice(CITIES)
    if rng.random() < 0.8:
        phone = f"({rng.choice(AREA_CODES)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    else:
        phone = f"+44 7{rng.randint(400, 999)} {rng.randint(0, 999999):06d}"
    return f"cus_{n:08d}", {
        "email": f"{first}.{last}.{n}@{rng.choice(DOMAINS)}".replace("'", ""),
        "phone": phone if rng.random() < 0.9 else None,
        "first_name": first,
        "last_name": last,
        "street": f"{rng.randint(1, 9999)} {rng.choice(STREETS)}",
        "street2": f"Apt {rng.randint(1, 50)}" if rng.random() < 0.2 else None,
        "state": state.lower() if rng.random() < 0.1 else state,
        "city": city,
        "zip": f"{zip_prefix}{rng.randint(0, 99):02d}",
        "country": "us",
    }


def history(
    customer_id: int, created: datetime, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """A verification history that the transition table allows, newest last."""
    (outcome,) = rng.choices([o for o, _ in OUTCOMES], weights=[w for _, w in OUTCOMES])
    if outcome is None:
        return []
    statuses = [rng.choice(FAILED) for _ in range(rng.choices([0, 1, 2], [80, 15, 5])[0])]
    statuses.append(outcome)
    rows = []
    moment = created
    for status in statuses:
        moment = min(now, moment + timedelta(minutes=rng.randint(1, 60 * 24 * 30)))
        started = moment
        if status in (KycStatus.PENDING, KycStatus.UNDER_REVIEW):  # still open: recent
            started = now - timedelta(minutes=rng.randint(1, 60 * 20))
        if status is KycStatus.EXPIRED:
            changed = started + timedelta(hours=24)
        elif status is KycStatus.PENDING:
            changed = started
        else:
            changed = started + timedelta(minutes=rng.randint(0, 30))
        rows.append(
            {
                "customer_id": customer_id,
                "type": KycType.PROOF_OF_ID,
                "status": status,
                "created_at": started,
                "updated_at": min(changed, now),
            }
        )
        moment = changed
    return rows


def generate(
    start: int, count: int, seed: int
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Customer rows (ids from `start`) with their verifications, each checked by the rules."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    span = timedelta(days=730)
    for offset in range(count):
        n = start + offset
        external_id, data = raw_customer(n, rng)
        checked = rules.check_customer(external_id, data)
        if not checked.ok:
            data["phone"] = None  # a made-up number the plan does not allow; keep the customer
            checked = rules.check_customer(external_id, data)
        assert checked.ok, checked.problems
        values = checked.values
        # Created in id order over two years, several in the same millisecond at times.
        created = now - span + span * (offset / max(count, 1))
        created = created.replace(microsecond=created.microsecond // 1000 * 1000)
        verifications = history(n, created, now, rng)
        newest = verifications[-1] if verifications else None
        row = {
            "id": n,
            "external_customer_id": values["external_customer_id"],
            **{name: values[name] for name in rules.DATA_FIELDS},
            **customers.search_keys(values),
            "kyc_status": newest and newest["status"],
            "kyc_started_at": newest and newest["created_at"],
            "created_at": created,
            "updated_at": min(now, created + timedelta(minutes=rng.choice([0, 0, 5, 600, 90_000]))),
        }
        yield row, verifications


async def seed(database_url: str, count: int, seed_value: int = 1) -> float:
    """Insert `count` customers; returns the seconds it took."""
    db = Database(database_url)
    await migrate.upgrade(db)
    async with db.read() as session:
        start = ((await session.execute(select(func.max(Customer.id)))).scalar() or 0) + 1
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    verifications: list[dict[str, Any]] = []
    with tqdm(total=count, unit=" customers", smoothing=0.1) as progress:
        for row, history_rows in generate(start, count, seed_value):
            rows.append(row)
            verifications.extend(history_rows)
            if len(rows) == BATCH:
                await _insert(db, rows, verifications)
                progress.update(len(rows))
                rows, verifications = [], []
        if rows:
            await _insert(db, rows, verifications)
            progress.update(len(rows))
    if db.engine.dialect.name == "postgresql":
        # The ids were given explicitly, so the sequence behind them never moved: bring it
        # past the last row, or the next customer the API creates would take a used id.
        async with db.write() as session:
            await session.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('customer', 'id'), "
                    "(SELECT max(id) FROM customer))"
                )
            )
        # Fresh statistics, as autovacuum would gather them soon after a real bulk load.
        async with db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("ANALYZE"))
    seconds = time.perf_counter() - began
    await db.dispose()
    return seconds


async def _insert(
    db: Database, rows: list[dict[str, Any]], verifications: list[dict[str, Any]]
) -> None:
    # Core inserts of the tables: one executemany each (the ORM's bulk path splits batches).
    async with db.write() as session:
        await session.execute(insert(_table(Customer)), rows)
        if verifications:
            await session.execute(insert(_table(KycVerification)), verifications)


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="customers to add")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./bench.db"),
        help="SQLAlchemy URL (default: DATABASE_URL, else ./bench.db)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    args = parser.parse_args()
    seconds = asyncio.run(seed(args.database_url, args.count, args.seed))
    print(f"seeded {args.count:,} customers in {seconds:.1f} s ({args.count / seconds:,.0f}/s)")


if __name__ == "__main__":
    main()
