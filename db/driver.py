"""Statements compiled once, run on the driver's own connection (aiosqlite or asyncpg).

The compiled read path (schema/compiled/) answers its documents with a statement or two per
request. Through an ORM session each of them costs SQLAlchemy's per-call machinery (a
greenlet, an execution context, a cursor wrapper, ORM rows); here the statement is built
from the models with SQLAlchemy Core and compiled for the dialect once, and each request
only binds its values and converts the rows as the columns' own types' processors do, so a
value reads exactly as the ORM would read it (for the types this schema uses, by expressions
that do what their processors do, written into each statement's row reader: `conversion`).

Reads run on the readers' connections (`Database.fetch`: db/sqlite_readers.py,
db/postgres_readers.py), bounded by the engine's timeouts and its unreachable-latch. Every
statement run here, a read's or a write's, is reported to `Database.statement_observers`
(a write session carries them in its `info`), so that a test counting statements sees them
all.

Writes take the same way (`WriteDriver`), on the driver connection of a write transaction:
`Database.transaction()`'s, which begins and ends it on the driver itself (the customer
writes, made only of such statements), or an ORM write session's, which owns its begin,
commit and rollback (the writes that still go through the ORM). A statement is a round trip
either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Dialect, Enum, Select, bindparam, false, literal
from sqlalchemy.engine import processors
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

from db.models import UTCDateTime


class Conversion(NamedTuple):
    """How a row reader converts one column's driver value: `expression`, Python source in
    `{v}` (a name holding the value) and `{c}` (a name holding `constant`)."""

    expression: str
    constant: Any = None


class _Memo(dict[Any, Any]):
    """A pure processor's answers for the values known in advance; any other value is given
    to the processor itself (an Enum's raises its own LookupError for a value it lacks)."""

    def __init__(self, process: Callable[[Any], Any], known: Iterable[Any]) -> None:
        super().__init__((value, process(value)) for value in known)
        self.process = process

    def __missing__(self, value: Any) -> Any:
        return self.process(value)


# The names the expressions below use besides `{v}` and `{c}`.
_READER_NAMES: dict[str, Any] = {
    "_new": tuple.__new__,
    "_fromiso": datetime.fromisoformat,
    "_UTC": UTC,
    "_EPOCH": datetime(1970, 1, 1, tzinfo=UTC),
    "_NAIVE_EPOCH": datetime(1970, 1, 1),
}
# UTCDateTime.process_result_value, inline, `_d` holding the value while it is looked at. A
# naive value is made UTC by arithmetic, exact to the microsecond: `replace(tzinfo=...)`
# costs 0.7 us a value on CPython 3.11, four times the arithmetic.
_AS_UTC = (
    "(_EPOCH + (_d - _NAIVE_EPOCH) if (_d := {value}).tzinfo is None else _d.astimezone(_UTC))"
)


def conversion(column_type: TypeEngine[Any], dialect: Dialect) -> Conversion | None:
    """How a row reader converts a value of `column_type` (its dialect's implementation) as
    the type's result processor does on `dialect`; None for a type without one.

    The one place that knows how the schema's types read. SQLAlchemy's processors are
    Python closures around Python methods (a TypeDecorator's calls its own
    `process_result_value` around its impl's processor; an Enum's calls a method that looks
    the value up), and a page's rows call them for every value: in a compiled read they
    cost more than the statement itself. So the reader does their work inline instead, the
    same work, which tests/test_driver_rows.py holds to the processors' answers for every
    column of the tables the compiled reads return. Any other type keeps its processor.
    """
    process = column_type.result_processor(dialect, None)
    if process is None:
        return None
    if isinstance(column_type, Enum):  # a string among known values, None included
        return Conversion("{c}[{v}]", _Memo(process, [None, *column_type.enums]))
    if type(column_type) is UTCDateTime:
        # The impl's own processor, which the decorator's result_processor calls first.
        parse = column_type.impl_instance.result_processor(dialect, None)
        if parse is None:  # asyncpg's timestamptz: an aware datetime
            return Conversion("None if {v} is None else " + _AS_UTC.format(value="{v}"))
        if parse is processors.str_to_datetime:  # SQLite's text, no regexp of its own
            return Conversion("None if {v} is None else " + _AS_UTC.format(value="_fromiso({v})"))
    return Conversion("{c}({v})", process)


@cache
def row_type(labels: tuple[str, ...]) -> Any:
    """The named tuple of a statement's rows, by its columns' labels: one type for every
    statement that reads the same columns (a write's customer is the row its update read).
    Any: mypy wants a named tuple's fields written out."""
    return NamedTuple("Row", [(label, Any) for label in labels])


@dataclass(frozen=True)
class DriverStatement:
    """A select compiled for one dialect, with what binds its values and reads its rows."""

    sql: str
    names: tuple[str, ...]  # the bound parameters, in the order the SQL takes them
    binds: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # values the statement sets itself (SQLite's OFFSET 0, say)
    results: tuple[Conversion | None, ...]  # each column's, in order
    row: type[NamedTuple]  # each row, its values named by the columns' labels

    @classmethod
    def compile(cls, query: Select[Any] | UpdateBase, dialect: Dialect) -> DriverStatement:
        """`query`'s rows are its selected columns, or an insert's or update's RETURNING."""
        return cls.of(query, query.compile(dialect=dialect), dialect)

    @classmethod
    def of(
        cls, query: Select[Any] | UpdateBase, compiled: Any, dialect: Dialect
    ) -> DriverStatement:
        """The statement `compiled` from `query` for `dialect`."""
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        columns = list(query.exported_columns)
        results = tuple(
            conversion(column.type.dialect_impl(dialect), dialect) for column in columns
        )
        row = row_type(tuple(str(column.key) for column in columns))
        return cls(
            sql=compiled.string,
            names=names,
            binds=binds,
            fixed=dict(compiled.params),
            results=results,
            row=row,
        )

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        """The driver's positional parameters for these values (by bound parameter name)."""
        given = {**self.fixed, **values}
        return [
            given[name] if bind is None else bind(given[name])
            for name, bind in zip(self.names, self.binds, strict=True)
        ]

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        """The driver's rows with each value converted as the column's type reads it."""
        return list(map(self.reader, raw))

    @cached_property
    def reader(self) -> Callable[[Sequence[Any]], Any]:
        """One driver row to a `row`: a function written for this statement's columns, so
        that a column without a conversion costs nothing per row, and the row is made
        without the Python frame of a named tuple's constructor."""
        names = [f"v{n}" for n in range(len(self.results))]
        items = "".join(  # the row's tuple: each value and a comma, so that one is a tuple too
            f"{name if read is None else read.expression.format(v=name, c=f'c{n}')}, "
            for n, (name, read) in enumerate(zip(names, self.results, strict=True))
        )
        namespace = {**_READER_NAMES, "Row": self.row}
        namespace.update((f"c{n}", read.constant) for n, read in enumerate(self.results) if read)
        unpack = f"    {', '.join(names)}, = r\n" if names else ""
        source = f"def read(r):\n{unpack}    return _new(Row, ({items}))\n"
        exec(source, namespace)  # source of our own
        reader: Callable[[Sequence[Any]], Any] = namespace["read"]
        return reader


class PerDialect:
    """A statement built from the models whose shape never changes, compiled once for each
    dialect it runs on: a statement on every request's path (a lookup's read, each of a
    write's) is found with one look-up. `build` gets the dialect's name, for what differs
    between them (`ON CONFLICT`)."""

    def __init__(self, build: Callable[[str], Select[Any] | UpdateBase]) -> None:
        self.build = build
        self._compiled: dict[str, DriverStatement] = {}

    def on(self, dialect: Dialect) -> DriverStatement:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = DriverStatement.compile(self.build(dialect.name), dialect)
            self._compiled[dialect.name] = found
        return found


def settable(columns: Iterable[Any]) -> dict[str, Any]:
    """An INSERT's or UPDATE's values for these columns, each a bound parameter named
    `set_<column>` (SQLAlchemy keeps the columns' own names for its VALUES and SET)."""
    return {c.key: bindparam(f"set_{c.key}", type_=c.type) for c in columns}


def setting(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's values by the names `settable` binds them to (a name the statement does
    not take is left out when it runs)."""
    return {f"set_{name}": value for name, value in record.items()}


def among(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (...)`, a bound value each (not SQLAlchemy's expanding list, which a
    statement compiled once per shape cannot take); false for none."""
    literals = [literal(value, column.type) for value in values]
    return column.in_(literals) if literals else false()


class ByShape:
    """Statements whose values differ from request to request (a filter's, a cursor's sort
    key, a page's size), compiled once per dialect and shape, and built only then: a
    request names its shape (what its caller's own values decide: the order, the direction,
    which cursors), gives its conditions (whose shape is SQLAlchemy's own cache key: the
    conditions without their values) and its named values, and `build` makes the statement
    from those conditions when the shape is new. The conditions' values are read off them
    in the order their cache keys list them. Holds at most `limit` shapes, the oldest
    dropped first."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._compiled: dict[Hashable, tuple[DriverStatement, tuple[str, ...]]] = {}

    def on(
        self,
        dialect: Dialect,
        shape: Hashable,
        conditions: Sequence[ColumnElement[bool]],
        named: Mapping[str, Any],
        build: Callable[[], Select[Any] | UpdateBase],
    ) -> tuple[DriverStatement, dict[str, Any]]:
        """The statement of this shape compiled for `dialect`, and its values by bound name."""
        keys = []
        for condition in conditions:
            key = condition._generate_cache_key()
            if key is None:  # an element without a cache key: none of the conditions here
                raise TypeError("a condition SQLAlchemy cannot cache")
            keys.append(key)
        cache = (dialect.name, shape, tuple(key.key for key in keys))
        bound = [parameter for key in keys for parameter in key.bindparams]
        found = self._compiled.get(cache)
        if found is None:
            if len(self._compiled) >= self.limit:
                del self._compiled[next(iter(self._compiled))]
            query = build()
            compiled = query.compile(dialect=dialect)
            names = tuple(compiled.bind_names[parameter] for parameter in bound)
            found = self._compiled[cache] = DriverStatement.of(query, compiled, dialect), names
        statement, names = found
        values = dict(named)
        for name, parameter in zip(names, bound, strict=True):
            values[name] = parameter.effective_value
        return statement, values


class ConnectionBudget(NamedTuple):
    """How one process shares its DB_POOL_SIZE + DB_MAX_OVERFLOW connections.

    The async SQLModel session is the door to the database: the ORM reads, every write and
    its transaction go through the engine's pool. The compiled path's reads keep connections
    of their own (db/sqlite_readers.py, db/postgres_readers.py) because a checkout from the
    pool costs a pre-ping or a reset round trip and two greenlets per read. Were the two
    sized apart, a process would hold up to twice what its operator gave it, and a
    PostgreSQL server's max_connections is sized by that setting times the processes. So
    they come out of one budget: the readers take up to DB_POOL_SIZE of it (half at most,
    none when it is a single connection: the reads then check out the pool's), and the
    pool keeps the rest, its size first, then its overflow.
    """

    pool_size: int  # the engine pool's connections kept open
    max_overflow: int  # and opened beyond them under load
    readers: int  # the compiled reads' own connections

    @classmethod
    def share(cls, pool_size: int, max_overflow: int) -> ConnectionBudget:
        total = pool_size + max_overflow
        readers = min(pool_size, total // 2) if total >= 2 else 0
        kept = min(pool_size, total - readers)
        return cls(kept, total - readers - kept, readers)


_DRIVER = "session_driver"  # session.info's key: the transaction, and its WriteDriver
# session.info's key: the statement observers of the Database whose session it is, told the
# SQL of each statement run here, as `Database.fetch` tells them of its own.
OBSERVERS = "statement_observers"

# An observer is told the SQL of a statement as it starts; what it returns, if anything, is
# called when the statement ends, with what it raised or None (a tracer ends its span so).
StatementEnd = Callable[[BaseException | None], None]
StatementObserver = Callable[[str], StatementEnd | None]


def started(observers: Sequence[StatementObserver], sql: str) -> list[StatementEnd]:
    """Tells `observers` of a statement starting: what to call when it ends."""
    ends = []
    for observe in observers:
        end = observe(sql)
        if end is not None:
            ends.append(end)
    return ends


def ended(ends: Sequence[StatementEnd], error: BaseException | None = None) -> None:
    for end in ends:
        end(error)


class WriteDriver:
    """The driver connection (aiosqlite's or asyncpg's) under a write transaction: one
    `Database.transaction()` yields, or an ORM write session's (`of`).

    Getting a session's begins its transaction, as its first statement would: on SQLite the
    engine's begin hook sends `BEGIN IMMEDIATE`. SQLAlchemy's asyncpg adapter begins its
    transaction only when its own cursor first runs a statement, so it is begun here: else
    these statements would each commit on their own. The session commits or rolls back.
    """

    def __init__(
        self,
        dialect: Dialect,
        connection: Any,
        observers: Sequence[StatementObserver] = (),
    ) -> None:
        self.dialect = dialect
        self.connection = connection
        self.sqlite = dialect.name == "sqlite"
        self.observers = observers

    @classmethod
    async def of(cls, session: AsyncSession) -> WriteDriver:
        """The session's, made once per transaction (a write and its event append share it:
        each making its own cost a greenlet and a checkout of the session's connection)."""
        transaction = session.get_transaction()
        made = session.info.get(_DRIVER)
        if made is not None and transaction is not None and made[0] is transaction:
            driver: WriteDriver = made[1]
            return driver
        driver = await cls._make(session)
        session.info[_DRIVER] = (transaction, driver)
        return driver

    @classmethod
    async def _make(cls, session: AsyncSession) -> WriteDriver:
        connection = await session.connection()
        adapted = (await connection.get_raw_connection()).dbapi_connection
        if connection.dialect.name == "postgresql" and adapted._transaction is None:  # type: ignore[union-attr]
            await adapted._start_transaction()  # type: ignore[union-attr]
        observers = session.info.get(OBSERVERS, ())
        return cls(connection.dialect, adapted.driver_connection, observers)  # type: ignore[union-attr]

    async def run(self, statement: PerDialect, values: Mapping[str, Any]) -> list[Any]:
        """The rows of `statement` (none for one without RETURNING) with these values."""
        compiled = statement.on(self.dialect)
        parameters = compiled.parameters(values)
        ends = started(self.observers, compiled.sql) if self.observers else ()
        try:
            if self.sqlite:
                raw = await self.connection.execute_fetchall(compiled.sql, parameters)
            else:
                raw = await self.connection.fetch(compiled.sql, *parameters)
        except BaseException as error:
            ended(ends, error)
            raise
        ended(ends)
        return compiled.rows(raw)

    @asynccontextmanager
    async def savepoint(self, name: str) -> AsyncIterator[None]:
        """A savepoint: what raises inside it is undone, and the transaction goes on (on
        PostgreSQL a failed statement would otherwise abort the whole transaction)."""
        await self._execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self._execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        await self._execute(f"RELEASE SAVEPOINT {name}")

    async def _execute(self, sql: str) -> None:
        ends = started(self.observers, sql) if self.observers else ()
        try:
            if self.sqlite:
                await self.connection.execute_fetchall(sql)
            else:
                await self.connection.execute(sql)
        except BaseException as error:
            ended(ends, error)
            raise
        ended(ends)
