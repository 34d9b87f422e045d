"""The raw ceiling for `bench.http`: the least a server can do to answer the bench's requests.

    python -m bench.ceiling --database-url URL --port 0 --answers answers.json

A bare Starlette route on uvloop and httptools, answering with orjson. It reads and writes
the same tables with the same statements as the API's compiled path, checks the same bearer
key against an in-memory table (loaded once at start), runs `db.rules` on every write and
appends its event to the feed in the same transaction (the counter row, then the event, as
db/events.py does), and answers the bench's documents with the same JSON the API gives. It
knows those documents only, by their exact text, and parses no GraphQL: what
it costs is the floor that HTTP, the driver, the rules and JSON put under any server. It
lives in bench/ and is never part of the served app.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import orjson
import uvicorn
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.utils.str_converters import to_camel_case

from db import rules
from db.kyc import DEFAULT_TTL
from db.models import utc_now

COLUMNS = {to_camel_case(name): name for name in rules.DATA_FIELDS}
DATA = list(COLUMNS.items())  # (contract name, column)
CUSTOMER_COLUMNS = "c.id, c.external_customer_id, " + ", ".join(f"c.{c}" for _, c in DATA)
CUSTOMER_COLUMNS += ", c.kyc_status, c.kyc_started_at, c.created_at, c.updated_at"
VERIFICATION_COLUMNS = "v.id, v.type, v.status, v.created_at, v.updated_at"
# The orders the bench pages in: the ORDER BY of the page, and what its cursors hold.
ORDERS = {
    "CREATED_AT": ("created_at DESC, id DESC", "DESC"),
    "EXTERNAL_CUSTOMER_ID": ("external_customer_id ASC", "ASC"),
}


def page_sql(order: str, filtered: bool, postgres: bool) -> str:
    """The page (maybe of one KYC status) and each customer's verifications in one statement,
    as the API's compiled path reads them (db/customer_rows.py): the page is a subquery, and
    each customer's verifications are looked up by their index (on PostgreSQL a LATERAL
    join, kept from becoming a hash join of the whole table by OFFSET 0)."""
    by, _ = ORDERS[order]
    # The status, if any, is $1 and the size follows: SQLite's placeholders go in order.
    where = "WHERE kyc_status = $1 " if filtered else ""
    page = f"(SELECT * FROM customer {where}ORDER BY {by} LIMIT ${2 if filtered else 1}) AS c"
    outer = ", ".join(f"c.{term}" for term in by.split(", "))
    if postgres:
        verifications = (
            f"LEFT OUTER JOIN LATERAL (SELECT {VERIFICATION_COLUMNS} FROM kyc_verification AS v "
            "WHERE v.customer_id = c.id OFFSET 0) AS v ON true"
        )
    else:
        verifications = "LEFT OUTER JOIN kyc_verification AS v ON v.customer_id = c.id"
    return (
        f"SELECT {CUSTOMER_COLUMNS}, {VERIFICATION_COLUMNS} FROM {page} {verifications} "
        f"ORDER BY {outer}, v.id"
    )


LOOKUP = (
    f"SELECT {CUSTOMER_COLUMNS}, {VERIFICATION_COLUMNS} FROM customer AS c "
    "LEFT OUTER JOIN kyc_verification AS v ON v.customer_id = c.id "
    "WHERE c.external_customer_id = $1 ORDER BY v.id"
)
TAKEN = "SELECT external_customer_id, email_key FROM customer WHERE external_customer_id = $1 "
TAKEN += "OR email_key = $2"
KEYS = ("email_key", "external_id_key", "first_name_key", "last_name_key")
INSERT = (
    "INSERT INTO customer (external_customer_id, "
    + ", ".join(c for _, c in DATA)
    + ", "
    + ", ".join(KEYS)
    + ", created_at, updated_at) VALUES ("
    + ", ".join(f"${n}" for n in range(1, len(DATA) + len(KEYS) + 4))
    + ") RETURNING id"
)
FOR_UPDATE = f"SELECT {CUSTOMER_COLUMNS} FROM customer AS c WHERE c.external_customer_id = $1"
# Every change appends its event to the feed in the same transaction, as db/events.py does:
# the counter row first (its lock orders the feed), then the event.
NEXT_EVENT = "UPDATE event_counter SET last = last + 1 WHERE id = 1 RETURNING last"
EVENT = (
    "INSERT INTO customer_event (id, type, external_customer_id, changed_fields, actor, "
    "occurred_at, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
TAKEN_EMAIL = "SELECT external_customer_id, email_key FROM customer WHERE email_key = $1 "
TAKEN_EMAIL += "AND id != $2"


def qmark(sql: str) -> str:
    """The statement with SQLite's placeholders (each $n appears once, in order)."""
    return re.sub(r"\$\d+", "?", sql)


def global_id(type_name: str, key: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


class Backend:
    """One kind of database under the same five operations."""

    sqlite: bool

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def write(self) -> Any:
        raise NotImplementedError

    def stamp(self, moment: datetime) -> Any:
        raise NotImplementedError

    def instant(self, value: Any) -> datetime:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class SQLite(Backend):
    """A few reader connections and one writer, whose turn is taken in order."""

    sqlite = True

    def __init__(self, path: str) -> None:
        self.path = path
        self.readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self.writer: aiosqlite.Connection | None = None
        self.turn = asyncio.Lock()

    async def open(self, readers: int = 4) -> None:
        for n in range(readers + 1):
            connection = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                await connection.execute(f"PRAGMA {pragma}")
            if n == 0:
                self.writer = connection
            else:
                self.readers.put_nowait(connection)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        connection = await self.readers.get()
        try:
            async with connection.execute(qmark(sql), args) as cursor:
                return list(await cursor.fetchall())
        finally:
            self.readers.put_nowait(connection)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Callable[..., Awaitable[list[Any]]]]:
        assert self.writer is not None
        writer = self.writer
        async with self.turn:

            async def run(sql: str, *args: Any) -> list[Any]:
                async with writer.execute(qmark(sql), args) as cursor:
                    return list(await cursor.fetchall())

            await writer.execute("BEGIN IMMEDIATE")
            try:
                yield run
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
            await writer.execute("COMMIT")

    def stamp(self, moment: datetime) -> Any:
        return moment.replace(tzinfo=None).isoformat(" ", "microseconds")

    def instant(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    async def close(self) -> None:
        connections = [self.writer] if self.writer else []
        while not self.readers.empty():
            connections.append(self.readers.get_nowait())
        for connection in connections:
            await connection.close()


class PostgreSQL(Backend):
    sqlite = False

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: Any = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=5, max_size=15)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.pool.fetch(sql, *args))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Callable[..., Awaitable[list[Any]]]]:
        async with self.pool.acquire() as connection, connection.transaction():

            async def run(sql: str, *args: Any) -> list[Any]:
                return list(await connection.fetch(sql, *args))

            yield run

    def stamp(self, moment: datetime) -> Any:
        return moment

    def instant(self, value: Any) -> datetime:
        moment: datetime = value
        return moment

    async def close(self) -> None:
        await self.pool.close()


def db_names(data: dict[str, Any]) -> dict[str, Any]:
    """Contract-named data by the db layer's names (its columns)."""
    return {COLUMNS[name]: value for name, value in data.items()}


def graphql_names(values: dict[str, Any]) -> dict[str, Any]:
    return {to_camel_case(name): value for name, value in values.items()}


def folded(value: str | None) -> str | None:
    return None if value is None else rules.fold(value)


def millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Answers:
    """The workloads, answered from rows."""

    def __init__(self, backend: Backend, extensions: dict[str, Any], ttl: timedelta) -> None:
        # The cursors are signed as ours signs them, with the CURSOR_SECRET both are given.
        self.secret = hashlib.sha256(os.environ["CURSOR_SECRET"].encode()).digest()
        self.db = backend
        self.extensions = extensions
        self.ttl = ttl

    def when(self, value: Any) -> str:
        if self.db.sqlite:  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
            text: str = value
            return f"{text[:10]}T{text[11:23]}Z"
        return millis(value)

    def status(self, status: str | None, started: Any, stale: Any) -> str | None:
        if status == "PENDING" and started is not None and started <= stale:
            return "EXPIRED"
        return status

    def stale_before(self, now: datetime) -> Any:
        return self.db.stamp(now - self.ttl)

    def cursor(self, order: str, created: Any, external_id: str, key: int) -> str:
        moment = self.db.instant(created) if self.db.sqlite else created
        values = [moment.isoformat(), key] if order == "CREATED_AT" else [external_id]
        raw = json.dumps([order, ORDERS[order][1], *values], separators=(",", ":")).encode()
        check = hashlib.blake2b(raw, key=self.secret, digest_size=16).digest()
        return base64.urlsafe_b64encode(check + raw).decode().rstrip("=")

    def data(self, row: Any, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: row[2 + index] for index, (name, _) in enumerate(DATA) if name in names}

    async def customers(
        self, variables: dict[str, Any], now: datetime, _actor: str
    ) -> dict[str, Any]:
        return await self.page(variables, now, heavy=False)

    async def heavy(self, variables: dict[str, Any], now: datetime, _actor: str) -> dict[str, Any]:
        return await self.page(variables, now, heavy=True)

    async def page(self, variables: dict[str, Any], now: datetime, heavy: bool) -> dict[str, Any]:
        """A page of the bench's: the default order or by externalCustomerId, maybe of one
        KYC status (the review queue: neither PENDING nor EXPIRED, so no stale PENDING
        counts); the example document's selection, or the heavy list's."""
        first = variables["first"]
        order = (variables.get("orderBy") or {}).get("field", "CREATED_AT")
        statuses = (variables.get("filter") or {}).get("kycStatus")
        if statuses is not None:
            assert len(statuses) == 1, statuses
            assert statuses[0] not in ("PENDING", "EXPIRED"), statuses
        sql = page_sql(order, statuses is not None, not self.db.sqlite)
        stale = self.stale_before(now)
        rows = await self.db.fetch(sql, *(statuses or ()), first + 1)
        nodes: list[dict[str, Any]] = []
        keys: list[Any] = []
        n = len(DATA) + 2
        names = tuple(COLUMNS) if heavy else ("email", "firstName", "lastName", "country")
        for row in rows:
            if not keys or keys[-1][-1] != row[0]:
                if len(keys) == first:
                    break
                keys.append((row[n + 2], row[1], row[0]))
                nodes.append(
                    {
                        "id": global_id("Customer", row[0]),
                        "externalCustomerId": row[1],
                        "data": self.data(row, names),
                        "kycStatus": self.status(row[n], row[n + 1], stale),
                        "kycVerifications": [],
                        "createdAt": self.when(row[n + 2]),
                        "updatedAt": self.when(row[n + 3]),
                    }
                )
            if row[n + 4] is not None:
                status = self.status(row[n + 6], row[n + 7], stale)
                verification = (
                    {"type": row[n + 5], "status": status, "createdAt": self.when(row[n + 7])}
                    if heavy
                    else {"id": global_id("KycVerification", row[n + 4]), "status": status}
                )
                nodes[-1]["kycVerifications"].append(verification)
        more = len({row[0] for row in rows}) > first
        cursors = [
            self.cursor(order, created, external_id, key) for created, external_id, key in keys
        ]
        return {
            "customers": {
                "pageInfo": {
                    "hasNextPage": more,
                    "hasPreviousPage": False,
                    "startCursor": cursors[0] if cursors else None,
                    "endCursor": cursors[-1] if cursors else None,
                },
                "edges": [
                    {"cursor": cursor, "node": node}
                    for cursor, node in zip(cursors, nodes, strict=True)
                ],
            }
        }

    async def customer(
        self, variables: dict[str, Any], now: datetime, _actor: str
    ) -> dict[str, Any]:
        rows = await self.db.fetch(LOOKUP, variables["externalCustomerId"])
        if not rows:
            return {"customer": None}
        stale = self.stale_before(now)
        row, n = rows[0], len(DATA) + 2
        verifications = []
        for v in rows:
            if v[n + 4] is None:
                continue
            status = self.status(v[n + 6], v[n + 7], stale)
            updated = (
                millis(self.db.instant(v[n + 7]) + self.ttl)
                if status != v[n + 6]
                else self.when(v[n + 8])
            )
            verifications.append(
                {
                    "id": global_id("KycVerification", v[n + 4]),
                    "type": v[n + 5],
                    "status": status,
                    "createdAt": self.when(v[n + 7]),
                    "updatedAt": updated,
                }
            )
        return {
            "customer": {
                "id": global_id("Customer", row[0]),
                "externalCustomerId": row[1],
                "data": self.data(row, tuple(COLUMNS)),
                "kycStatus": self.status(row[n], row[n + 1], stale),
                "kycVerifications": verifications,
                "createdAt": self.when(row[n + 2]),
                "updatedAt": self.when(row[n + 3]),
            }
        }

    async def event(
        self, run: Any, kind: str, external_id: str, changed: str, actor: str, now: datetime
    ) -> None:
        (number,) = (await run(NEXT_EVENT))[0]
        stamp = self.db.stamp(now)
        await run(EVENT, number, kind, external_id, changed, actor, stamp, stamp)
        if not self.db.sqlite:
            await run("SELECT pg_notify('customer_events', $1)", str(number))

    async def create(self, variables: dict[str, Any], now: datetime, actor: str) -> dict[str, Any]:
        given = variables["input"]
        checked = rules.check_customer(given["externalCustomerId"], db_names(given["data"]))
        values = graphql_names(checked.values)
        assert checked.ok, checked.problems  # the bench sends valid customers only
        folded = {
            "email_key": rules.fold(values["email"] or ""),
            "external_id_key": rules.fold(values["externalCustomerId"] or ""),
            "first_name_key": None
            if values["firstName"] is None
            else rules.fold(values["firstName"]),
            "last_name_key": None if values["lastName"] is None else rules.fold(values["lastName"]),
        }
        stamp = self.db.stamp(now)
        async with self.db.write() as run:
            taken = await run(TAKEN, values["externalCustomerId"], folded["email_key"])
            assert not taken, "the bench sends new ids and e-mails only"
            inserted = await run(
                INSERT,
                values["externalCustomerId"],
                *(values[name] for name, _ in DATA),
                *(folded[k] for k in KEYS),
                stamp,
                stamp,
            )
            await self.event(run, "CUSTOMER_CREATED", values["externalCustomerId"], "", actor, now)
        at = millis(now)
        customer = {
            "id": global_id("Customer", inserted[0][0]),
            "externalCustomerId": values["externalCustomerId"],
            "data": {name: values[name] for name, _ in DATA},
            "kycStatus": None,
            "createdAt": at,
            "updatedAt": at,
        }
        return {"createCustomer": {"customer": customer, "userErrors": [], "warnings": []}}

    async def update(self, variables: dict[str, Any], now: datetime, actor: str) -> dict[str, Any]:
        given = variables["input"]
        sql = FOR_UPDATE if self.db.sqlite else FOR_UPDATE + " FOR UPDATE"
        async with self.db.write() as run:
            rows = await run(sql, given["externalCustomerId"])
            assert rows, "the bench updates seeded customers only"
            row = rows[0]
            stored = {name: row[2 + index] for index, (name, _) in enumerate(DATA)}
            checked = rules.check_record(db_names({**stored, **given["data"]}))
            assert checked.ok, checked.problems
            values = graphql_names(checked.values)
            email_key = rules.fold(values["email"] or "")
            assert not await run(TAKEN_EMAIL, email_key, row[0])
            changed = [(c, values[name]) for name, c in DATA if stored[name] != values[name]]
            updated_at = row[-1]
            if changed:
                keys = {
                    "email_key": email_key,
                    "first_name_key": folded(values["firstName"]),
                    "last_name_key": folded(values["lastName"]),
                }
                assignments = [*changed, *keys.items(), ("updated_at", self.db.stamp(now))]
                sets = ", ".join(f"{c} = ${n}" for n, (c, _) in enumerate(assignments, 1))
                sql = f"UPDATE customer SET {sets} WHERE id = ${len(assignments) + 1}"
                await run(sql, *(v for _, v in assignments), row[0])
                updated_at = self.db.stamp(now)
                names = " ".join(c for c, _ in changed)
                await self.event(run, "CUSTOMER_UPDATED", row[1], names, actor, now)
        customer = {
            "id": global_id("Customer", row[0]),
            "externalCustomerId": row[1],
            "data": {name: values[name] for name, _ in DATA},
            "createdAt": self.when(row[-2]),
            "updatedAt": self.when(updated_at),
        }
        return {"updateCustomer": {"customer": customer, "userErrors": [], "warnings": []}}


def create_app(database_url: str, answers_file: Path, ttl: timedelta) -> Starlette:
    """The ceiling app: `answers_file` maps each workload's document to its name and to the
    `extensions` object the API reports for it (the cost), so the bytes match."""
    spec: dict[str, Any] = json.loads(answers_file.read_text())
    url = make_url(database_url)
    backend: SQLite | PostgreSQL
    if url.get_backend_name() == "sqlite":
        backend = SQLite(url.database or "")
    else:
        backend = PostgreSQL(url.set(drivername="postgresql").render_as_string(False))
    answers = Answers(backend, {}, ttl)
    handlers = {
        "customers": (answers.customers, "customers:read"),
        "heavy": (answers.heavy, "customers:read"),
        "customer": (answers.customer, "customers:read"),
        "createCustomer": (answers.create, "customers:write"),
        "updateCustomer": (answers.update, "customers:write"),
    }
    by_document = {
        document: (*handlers[entry["workload"]], orjson.dumps(entry["extensions"]))
        for document, entry in spec.items()
    }
    principals: dict[str, tuple[str, frozenset[str]]] = {}  # by hash: name, scopes

    async def graphql(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        principal = principals.get(digest)
        if scheme.lower() != "bearer" or principal is None:
            return Response(b'{"errors":[{"message":"unauthenticated"}]}', 401)
        name, scopes = principal
        body = orjson.loads(await request.body())
        handler, scope, extensions = by_document[body["query"]]
        if scope not in scopes:
            return Response(b'{"errors":[{"message":"forbidden"}]}', 200)
        data = await handler(body.get("variables") or {}, utc_now(), name)
        # The API writes {"data": ..., "extensions": ...}; orjson writes the data, the
        # extensions are the same bytes every time.
        content = b'{"data":' + orjson.dumps(data) + b',"extensions":' + extensions + b"}"
        return Response(content, media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        for name, key_hash, scopes, revoked in await backend.fetch(
            "SELECT name, key_hash, scopes, revoked_at FROM api_key"
        ):
            if revoked is None and hmac.compare_digest(key_hash, key_hash):
                principals[key_hash] = (name, frozenset(scopes.split()))
        yield
        await backend.close()

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--answers", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttl-seconds", type=float, default=DEFAULT_TTL.total_seconds())
    args = parser.parse_args()
    app = create_app(args.database_url, args.answers, timedelta(seconds=args.ttl_seconds))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
    )


if __name__ == "__main__":
    main()
