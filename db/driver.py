"""Statements compiled once, run on the driver's own connection (aiosqlite or asyncpg).

The compiled read path (schema/compiled/) answers its documents with a statement or two per
request. Through an ORM session each of them costs SQLAlchemy's per-call machinery (a
greenlet, an execution context, a cursor wrapper, ORM rows); here the statement is built
from the models with SQLAlchemy Core and compiled for the dialect once, and each request
only binds its values and converts the rows with the columns' own types' processors, so a
value reads exactly as the ORM would read it.

The connection still comes from the engine's pool (`Database.fetch`): its size, timeouts,
pre-ping and unreachable-latch apply, and statements are reported to the same observers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from sqlalchemy import Dialect, Select


@dataclass(frozen=True)
class DriverStatement:
    """A select compiled for one dialect, with what binds its values and reads its rows."""

    sql: str
    names: tuple[str, ...]  # the bound parameters, in the order the SQL takes them
    binds: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # values the statement sets itself (SQLite's OFFSET 0, say)
    results: tuple[Callable[[Any], Any] | None, ...]
    row: type[NamedTuple]  # each row, its values named by the columns' labels

    @classmethod
    def compile(cls, query: Select[Any], dialect: Dialect) -> DriverStatement:
        compiled = query.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        columns = list(query.selected_columns)
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        labels = [str(column.key) for column in columns]
        row = NamedTuple("Row", [(label, Any) for label in labels])  # type: ignore[misc]
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
        that a column without a conversion costs nothing per row."""
        values = ", ".join(
            f"r[{n}]" if read is None else f"p{n}(r[{n}])" for n, read in enumerate(self.results)
        )
        namespace: dict[str, Any] = {f"p{n}": read for n, read in enumerate(self.results)}
        namespace["Row"] = self.row
        exec(f"def read(r):\n    return Row({values})\n", namespace)  # source of our own
        reader: Callable[[Sequence[Any]], Any] = namespace["read"]
        return reader
