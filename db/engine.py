"""The async engine and the kinds of transaction that the rest of the code opens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import (
    AsyncAdaptedQueuePool,
    ConnectionPoolEntry,
    PoolProxiedConnection,
    PoolResetState,
)
from sqlalchemy.util import await_, greenlet_spawn

from db.driver import (
    OBSERVERS,
    ConnectionBudget,
    DriverStatement,
    StatementObserver,
    WriteDriver,
    ended,
    started,
)
from db.faults import DatabaseUnreachable, Fault, fault_of
from db.keepalive import KEEPALIVE_SETTINGS, keep_alive
from db.postgres_readers import PostgresReaders
from db.sqlite_readers import SQLiteReaders, pragmas

# An execution option read by the SQLite `begin` hook below: which BEGIN a transaction uses.
_SQLITE_BEGIN = "sqlite_begin"


@dataclass(frozen=True)
class Timeouts:
    """How long a request may wait on the database before it is told the database is sick.

    Without them a black-holed PostgreSQL keeps a request waiting for the operating system's
    TCP timeouts (minutes). `statement` is enforced on both sides: the server cancels the
    statement, and the driver stops waiting for an answer that may never come.

    The server also ends, by itself, what a client that went silent leaves behind. A write
    holds row locks until it commits, and every write takes the event counter's one row
    (db/events.py): a server cut off from PostgreSQL inside its commit window would otherwise
    stop the writes of every server until PostgreSQL noticed the dead client (hours, with the
    operating system's keepalive defaults). So a transaction idle for `idle_in_transaction`
    seconds is ended (its connection closed, its locks released), and a write waits at most
    `lock` seconds for a lock before it is told so (db.faults.Fault.LOCK_TIMEOUT): `lock` is
    no shorter than `idle_in_transaction`, so a write queued behind a dead client goes through
    once the holder is ended, and shorter than `statement`, so a write stuck behind a live
    but slow one says it waited on a lock (a failed write is never run again: one wait). TCP
    keepalives (db/keepalive.py) end the sessions of clients whose host or route died.
    """

    connect: float = 1.5
    pool_checkout: float = 1.5
    statement: float | None = 3.0  # None: unbounded (migrations, commands)
    # Both unset with `statement` None: a migration may work between statements for long.
    idle_in_transaction: float = 2.0
    lock: float = 2.0

    def engine_options(self, url: str) -> dict[str, Any]:
        # SQLite has no network to fail: its writers queue for the file's lock (up to the busy
        # timeout) while holding pooled connections, and a short pool timeout would turn a
        # burst of writes into errors. The timeouts are PostgreSQL's.
        if make_url(url).get_backend_name() != "postgresql":
            return {}
        connect_args: dict[str, Any] = {"timeout": self.connect}
        settings = dict(KEEPALIVE_SETTINGS)
        if self.statement is not None:
            connect_args["command_timeout"] = self.statement
            settings.update(
                statement_timeout=_ms(self.statement),
                idle_in_transaction_session_timeout=_ms(self.idle_in_transaction),
                lock_timeout=_ms(self.lock),
            )
        connect_args["server_settings"] = settings
        return {"pool_timeout": self.pool_checkout, "connect_args": connect_args}


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


@dataclass
class _Latch:
    """Set when the database was found unreachable; checkouts fail at once until it ends."""

    cool_down: float = 1.0
    unreachable_until: float = 0.0
    failures: int = 0  # in a row; one slow connect on a busy machine must not trip it

    def trip(self) -> None:
        self.failures += 1
        if self.failures >= 2:
            self.unreachable_until = time.monotonic() + self.cool_down

    def reset(self) -> None:
        self.failures = 0

    def check(self) -> None:
        if time.monotonic() < self.unreachable_until:
            raise DatabaseUnreachable("the database was unreachable a moment ago")


class CountingPool(AsyncAdaptedQueuePool):
    """The usual async pool, counting the callers waiting for a usable connection (a free
    one, a new one being opened, or its pre-ping), and failing fast while the database is
    known to be unreachable.

    Without the latch, callers queued for a connection would each wait out their own connect
    timeout after the one before them: 30 requests on a black-holed database took up to 5 s.
    With it, a second failure to connect in a row makes every checkout fail at once for a
    second; then the next caller tries again, so recovery needs no restart. (One failure
    alone does not: on a busy machine a single connect can be slow.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0
        self.latch = _Latch()

    def recreate(self) -> CountingPool:
        pool = super().recreate()
        assert isinstance(pool, CountingPool)
        pool.latch = self.latch  # dispose() makes a new pool; the database is as sick
        return pool

    def connect(self) -> PoolProxiedConnection:
        self._refuse_while_unreachable()
        self.waiting += 1
        try:
            connection = super().connect()
            self.latch.reset()
            return connection
        except Exception as error:
            # The pool's own timeout means busy, not sick; anything else that says the
            # database cannot be reached sets the latch.
            if not isinstance(error, exc.TimeoutError) and fault_of(error) is Fault.UNAVAILABLE:
                self.latch.trip()
            raise
        finally:
            self.waiting -= 1

    def _create_connection(self) -> ConnectionPoolEntry:
        self._refuse_while_unreachable()  # a caller that waited in the queue meanwhile
        return super()._create_connection()

    def _refuse_while_unreachable(self) -> None:
        self.latch.check()


def _not_cancelled(record: logging.LogRecord) -> bool:
    # A close cancelled is `close(within)` giving up on a hung database, not an error.
    return not (record.exc_info and record.exc_info[0] is asyncio.CancelledError)


# SQLAlchemy quiets its own loggers ("sqlalchemy.*") to warnings; a pool class of ours logs
# under its own module's name, which would otherwise print every pool disposal at INFO.
_pool_logger = logging.getLogger(f"{__name__}.{CountingPool.__name__}")
_pool_logger.setLevel(logging.WARNING)
_pool_logger.addFilter(_not_cancelled)


class Database:
    """The engine plus `read()` and `write()` sessions, and `transaction()` on the driver.

    On SQLite the driver's own transaction handling is switched off and transactions are
    begun here. Writes begin with `BEGIN IMMEDIATE`, which takes the write lock up front: a
    deferred write transaction would read, then fail to upgrade its lock ("database is
    locked", which the busy timeout does not retry) or, worse, decide on a stale read. Reads
    begin nothing: each statement is its own snapshot, as under PostgreSQL's READ COMMITTED,
    and in WAL mode never waits for the writer. That saves a round trip per read.

    SQLite has one writer at a time. Rather than let every pooled connection take `BEGIN
    IMMEDIATE` and sleep-and-retry on the lock (SQLite's busy handler backs off up to 100 ms
    between tries, so an unlucky writer waits many turns: a long tail), writes in this
    process queue for their turn in arrival order (an asyncio lock is FIFO), and only the
    holder begins a transaction. The busy timeout is left for other processes. PostgreSQL
    locks rows, not the database: its writes stay concurrent.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        sqlite_busy_timeout_ms: int = 30_000,
        timeouts: Timeouts | None = None,
        echo: bool = False,
    ) -> None:
        self.url = url
        self.timeouts = timeouts or Timeouts()  # also the event listener's (db/feed.py)
        options: dict[str, Any] = {"echo": echo}
        # The pool and the compiled reads' connections share one budget (ConnectionBudget).
        pool_size, max_overflow, readers = ConnectionBudget.share(pool_size, max_overflow)
        if ":memory:" not in url:  # an in-memory SQLite database has no pool to size
            # A pre-ping costs a statement per checkout. A SQLite file cannot drop its
            # connection; a PostgreSQL server can restart or fail over, leaving dead ones.
            sqlite = url.startswith("sqlite")
            if sqlite:
                # A SQLite connection is a file handle and a thread, cheap to keep; the pool's
                # overflow would open one (a thread, five round trips to it) and close it
                # again for each request past the pool size under load: all are kept.
                pool_size, max_overflow = pool_size + max_overflow, 0
                # A connection back from a committed session has no transaction to roll back;
                # the reset hook of _configure_sqlite rolls back only one that has.
                options["pool_reset_on_return"] = None
            options.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=not sqlite)
            options.update(timeouts.engine_options(url) if timeouts else {})
            options["poolclass"] = CountingPool
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if isinstance(self.engine.pool, CountingPool):
            _latch_on_failed_pings(self.engine, self.engine.pool.latch, timeouts)
        # The driver's connections, for `close()` to terminate what is still open at the end.
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()
        if self.engine.dialect.name == "postgresql":
            _track_and_keep_alive(self.engine, self._opened)
        self._write_turn: asyncio.Lock | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_busy_timeout_ms)
            self._write_turn = asyncio.Lock()
        # Told the SQL of every statement, and when it ends (db/driver.py's
        # StatementObserver), whichever way it runs: on a driver connection (`fetch`'s, a
        # write's WriteDriver's, which tell them themselves) or through the ORM
        # (the engine's events tell them: `_observe_orm_statements`).
        self.statement_observers: list[StatementObserver] = []
        _observe_orm_statements(self.engine, self.statement_observers)
        observed = {OBSERVERS: self.statement_observers}
        self._readers = async_sessionmaker(
            self.engine.execution_options(**{_SQLITE_BEGIN: None}),
            expire_on_commit=False,
            info=observed,
        )
        self._writers = async_sessionmaker(
            self.engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"}),
            expire_on_commit=False,
            info=observed,
        )
        # `fetch`'s connections on a SQLite file (an in-memory database is one connection's),
        # and on PostgreSQL.
        self._sqlite_readers: SQLiteReaders | None = None
        database = make_url(url).database
        if self.is_sqlite and database and ":memory:" not in url and readers:
            self._sqlite_readers = SQLiteReaders(database, readers, sqlite_busy_timeout_ms)
        self._postgres_readers: PostgresReaders | None = None
        postgresql = self.engine.dialect.name == "postgresql"
        if postgresql and isinstance(self.engine.pool, CountingPool) and readers:
            latch = self.engine.pool.latch
            self._postgres_readers = PostgresReaders(
                make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                readers,
                bound=self.timeouts.connect,
                connect_args=timeouts.engine_options(url)["connect_args"] if timeouts else {},
                check=latch.check,
                failed=latch.trip,
            )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; each statement sees a consistent snapshot."""
        async with self._readers() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back when it raises.
        On SQLite it first waits, in arrival order, for this process's turn to write."""
        async with self._turn_to_write(), self._writers() as session, session.begin():
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteDriver]:
        """A write transaction on a pool connection's driver, without an ORM session, for a
        write made only of compiled statements (db/driver.py): committed when the block
        ends, rolled back when it raises. The connection is checked out of the same pool,
        behind the same unreachable-latch (on PostgreSQL its BEGIN is its ping: `_begun`),
        and on SQLite the write waits for this process's turn as `write()`'s do. What it
        spares is the session's begin, connection, commit and close, each a step through
        SQLAlchemy's greenlets: about 0.4 ms of CPU a write on PostgreSQL (bench/README.md)."""
        async with self._turn_to_write(), self._driver_transaction() as driver:
            yield driver

    def _turn_to_write(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """This process's turn to write on SQLite (in arrival order); none to wait for on
        PostgreSQL, whose writes stay concurrent."""
        return self._write_turn or contextlib.nullcontext()

    @asynccontextmanager
    async def _driver_transaction(self) -> AsyncIterator[WriteDriver]:
        pooled = await self._begun()
        connection: Any = pooled.driver_connection
        run = connection.execute_fetchall if self.is_sqlite else connection.execute
        # Back to the pool only after a COMMIT or ROLLBACK that ended: a connection left
        # anywhere else (a cancelled statement, a failed rollback, a lost server) is thrown
        # away, never given to another request mid-transaction.
        reusable = False
        try:
            try:
                yield WriteDriver(self.engine.dialect, connection, self.statement_observers)
            except Exception:
                with contextlib.suppress(Exception):  # what the block raised is what matters
                    await run("ROLLBACK")
                    reusable = True
                raise
            await run("COMMIT")
            reusable = True
        finally:
            await greenlet_spawn(pooled.close if reusable else pooled.invalidate)

    async def _begun(self) -> PoolProxiedConnection:
        """A pool connection inside a new transaction.

        On PostgreSQL the BEGIN is the checkout's ping, bounded as the ping is: the pre-ping
        would be a round trip of its own before it. A BEGIN changes nothing, so a connection
        that died in the pool (a restarted server) fails it harmlessly, and it is sent once
        more on a connection the pool pings, or opens: what the pre-ping would have done. A
        BEGIN that times out is not sent again, as a ping that times out is not (a reconnect
        would wait out another timeout on a database that just failed to answer)."""
        if self.is_sqlite:
            pooled = await self.engine.raw_connection()
            await self._begin(pooled, "BEGIN IMMEDIATE")
            return pooled
        skipped = _BEGIN_PINGS.set(True)
        try:
            pooled = await self.engine.raw_connection()
        finally:
            _BEGIN_PINGS.reset(skipped)
        try:
            await self._begin(pooled, "BEGIN")
            return pooled
        except Exception as error:
            if isinstance(error, TimeoutError) or fault_of(error) is not Fault.UNAVAILABLE:
                raise
        pooled = await self.engine.raw_connection()
        await self._begin(pooled, "BEGIN")
        return pooled

    async def _begin(self, pooled: PoolProxiedConnection, begin: str) -> None:
        connection: Any = pooled.driver_connection
        try:
            if self.is_sqlite:
                await connection.execute_fetchall(begin)
            else:
                await connection.execute(begin, timeout=self.timeouts.connect)
        except BaseException as error:
            if not self.is_sqlite:
                # As a failed ping: dropped at once (a polite close would wait on a server
                # that did not answer). A BEGIN that timed out tells the latch, as a ping that
                # timed out does; a connection found closed does not (the one the pool pings
                # or opens next tells it, if the server is gone).
                if isinstance(error, TimeoutError):
                    pool = self.engine.pool
                    if isinstance(pool, CountingPool):
                        pool.latch.trip()
                connection.terminate()
            await greenlet_spawn(pooled.invalidate)
            raise

    async def fetch(
        self, statement: DriverStatement, values: Mapping[str, Any], *, point: bool = False
    ) -> list[Any]:
        """The rows of one read statement, run on a driver connection: one of the readers'
        (db/sqlite_readers.py, db/postgres_readers.py), or one of the pool's where the
        budget leaves no readers (a single connection, or an in-memory SQLite database).
        `point`: it reads a few rows by a unique key, never a scan (SQLite's readers run
        such a read on the event loop's thread, where it costs less than a hand-off).

        A single statement needs no transaction: it sees one snapshot (SQLite's reads begin
        nothing; PostgreSQL's autocommit statement is its own transaction). A connection
        that failed in any way is thrown away, never given to another read.
        """
        parameters = statement.parameters(values)
        observers = self.statement_observers
        ends = started(observers, statement.sql) if observers else ()
        try:
            if point and self._sqlite_readers is not None:
                raw = await self._sqlite_readers.fetch_point(statement.sql, parameters)
            else:
                raw = await self._fetch(statement.sql, parameters)
        except BaseException as error:
            ended(ends, error)
            raise
        ended(ends)
        return statement.rows(raw)

    async def _fetch(self, sql: str, parameters: list[Any]) -> Any:
        readers = self._sqlite_readers or self._postgres_readers
        if readers is not None:
            return await readers.fetch(sql, parameters)
        pooled = await self.engine.raw_connection()
        driver: Any = pooled.driver_connection
        try:
            if self.is_sqlite:
                raw = await driver.execute_fetchall(sql, parameters)
            else:
                raw = await driver.fetch(sql, *parameters)
        except BaseException:
            await greenlet_spawn(pooled.invalidate)
            raise
        await greenlet_spawn(pooled.close)
        return raw

    def pool_status(self) -> tuple[int, int]:
        """Connections in use, and callers waiting for one."""
        pool = self.engine.pool
        if isinstance(pool, CountingPool):
            return pool.checkedout(), pool.waiting
        return 0, 0

    async def dispose(self) -> None:
        """Close the pool's connections (checked-out ones close when they are checked in)."""
        await self._close_readers()
        await self.engine.dispose()

    async def close(self, within: float) -> None:
        """At a stop: close the pool's connections for up to `within` seconds, then terminate
        (drop the socket of) every connection of the driver still open: one whose close did
        not end in time (a hung database: TimeoutError is raised), or one still held by work
        that did not stop. None is left for the garbage collector to find."""
        try:
            async with asyncio.timeout(within):
                await self._close_readers()
                await self.engine.dispose()
        except TimeoutError:
            await self.engine.dispose(close=False)
            raise
        finally:
            for connection in list(self._opened):
                if not connection.is_closed():
                    connection.terminate()
            if self._postgres_readers is not None:
                self._postgres_readers.terminate()  # those still open: none after a close

    async def _close_readers(self) -> None:
        if self._sqlite_readers is not None:
            await self._sqlite_readers.close()
        if self._postgres_readers is not None:
            await self._postgres_readers.close()


# Set while `Database.transaction()` checks a connection out on PostgreSQL: its BEGIN, the
# next round trip, is the connection's ping.
_BEGIN_PINGS: ContextVar[bool] = ContextVar("begin_pings", default=False)


def _latch_on_failed_pings(engine: AsyncEngine, latch: _Latch, timeouts: Timeouts | None) -> None:
    """A pre-ping that fails sets the latch, so the reconnect that follows it (and every other
    caller's) fails at once instead of waiting out a connect timeout too. On PostgreSQL the
    ping is bounded by the connect timeout, not the (longer) statement timeout: it is a
    round trip, and a request queued behind it must still answer within 5 s.

    The bounded ping runs on asyncpg itself, so its errors are translated into the DBAPI's
    (as the dialect's own ping does): SQLAlchemy reconnects when the pre-ping fails with a
    DBAPI error on a closed connection, and fails the checkout on anything else. A pooled
    connection that died while PostgreSQL restarted is replaced, not handed to a request as
    a 503. A ping that timed out is not retried: the reconnect would wait out another
    timeout on a database that just failed to answer."""
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping
    bounded = timeouts is not None and dialect.name == "postgresql"

    def do_ping(dbapi_connection: DBAPIConnection) -> bool:
        if _BEGIN_PINGS.get():
            return True
        try:
            if bounded and timeouts is not None:
                await_(_round_trip(dbapi_connection, timeouts.connect))
                return True
            return ping(dbapi_connection)
        except Exception as error:
            if fault_of(error) is Fault.UNAVAILABLE:
                latch.trip()
                if bounded:
                    # Dropped at once: the pool would close it politely next, waiting up to
                    # 2 s more on a server that did not answer the ping.
                    dbapi_connection.driver_connection.terminate()
            raise

    dialect.do_ping = do_ping  # type: ignore[method-assign]

    @event.listens_for(engine.sync_engine, "do_connect")
    def refuse_while_unreachable(*_args: Any) -> None:
        latch.check()


async def _round_trip(dbapi_connection: Any, seconds: float) -> None:
    # asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose task is cancelled just as
    # the answer arrives returns the answer and drops the cancellation (CPython gh-86296), so
    # a background loop cancelled at shutdown went on checking out connections.
    try:
        async with asyncio.timeout(seconds):
            await dbapi_connection.driver_connection.fetchrow(";")
    except TimeoutError:
        raise
    except Exception as error:
        dbapi_connection._handle_exception(error)  # raises the DBAPI's error for asyncpg's


def _track_and_keep_alive(engine: AsyncEngine, opened: weakref.WeakSet[Any]) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def track(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        opened.add(dbapi_connection.driver_connection)
        keep_alive(dbapi_connection.driver_connection)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # None turns off the driver's implicit BEGIN, so the hook below decides how to begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas(busy_timeout_ms):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        begin = connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN IMMEDIATE")
        if begin is not None:
            # On the driver itself: one round trip to aiosqlite's thread, where a cursor of
            # SQLAlchemy's costs three (open, execute, close).
            await_(connection.connection.driver_connection.execute_fetchall(begin))  # type: ignore[union-attr]

    @event.listens_for(engine.sync_engine.pool, "reset")
    def on_reset(
        dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, state: PoolResetState
    ) -> None:
        # The pool's own reset is off (it would roll back every connection coming back, a
        # round trip each): a connection is rolled back only when a transaction is open.
        if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()


def _observe_orm_statements(engine: AsyncEngine, observers: list[StatementObserver]) -> None:
    """Tell `observers` of each statement the ORM runs, and of its end, as the driver
    connections' runners do: one place for tracing and the tests' counts to watch. The ends
    ride on the statement's execution context, which the three events share."""
    sync = engine.sync_engine

    @event.listens_for(sync, "before_cursor_execute")
    def _before(_conn: Any, _cursor: Any, sql: str, _params: Any, context: Any, *_: Any) -> None:
        if observers and context is not None:
            context._statement_ends = started(observers, sql)

    @event.listens_for(sync, "after_cursor_execute")
    def _after(_conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, *_: Any) -> None:
        if (ends := getattr(context, "_statement_ends", None)) is not None:
            del context._statement_ends
            ended(ends)

    @event.listens_for(sync, "handle_error")
    def _failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        if (ends := getattr(context, "_statement_ends", None)) is not None:
            del context._statement_ends
            ended(ends, exception_context.original_exception)
