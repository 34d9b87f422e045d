"""CPU of turning a page's driver rows into the compiled path's customers, in process.

`bench.inprocess` measures a whole request; this isolates the part that runs per row after
the driver has answered: `DriverStatement.rows` (each value converted as its column's type
reads it) and `customer_rows._grouped` (the rows into customers with their verifications).
It answers each read workload of bench.http once through the app on SQLite, keeps the
statements and the driver's raw rows of its page, then times those two functions alone.

    .venv/bin/python -m bench.rows [--calls 300] [--rounds 7]

Each figure is the median over rounds of CPU microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from unittest.mock import patch

from bench.http import prepare, workloads
from bench.inprocess import Client, bodies
from db import customer_rows
from db.driver import DriverStatement
from web.app import create_app
from web.settings import Settings

Captured = tuple[DriverStatement, list[Any], bool | None]


async def capture(url: str, customers: int) -> dict[str, list[Captured]]:
    """Each read workload's statements, with the raw rows of its page (and, for a customer
    read, whether it asked for verifications: what `_grouped` is given)."""
    key = await prepare(url, customers)
    settings = Settings(
        database_url=url, kyc_sweep_interval_seconds=0, migrate_on_start=False, log_level="ERROR"
    )
    seen: list[Captured] = []
    rows, grouped = DriverStatement.rows, customer_rows._grouped

    def keep_rows(statement: DriverStatement, raw: Iterable[Sequence[Any]]) -> list[Any]:
        kept = list(raw)
        seen.append((statement, kept, None))
        return rows(statement, kept)

    def keep_grouped(read: list[Any], verifications: bool) -> list[customer_rows.CustomerRow]:
        statement, raw, _ = seen[-1]
        seen[-1] = (statement, raw, verifications)
        return grouped(read, verifications)

    found: dict[str, list[Captured]] = {}
    async with Client(create_app(settings), key) as client:
        for w in (w for w in workloads(customers) if not w.writes):
            await client.post(bodies(w, customers, 1)[0])  # warm: compile the statements
            with (
                patch.object(DriverStatement, "rows", keep_rows),
                patch.object(customer_rows, "_grouped", keep_grouped),
            ):
                await client.post(bodies(w, customers, 1)[0])
            found[w.name] = [c for c in seen if len(c[1]) > 1]
            seen.clear()
    return found


def cpu_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    figures = []
    for _ in range(rounds):
        gc.collect()
        before = time.process_time()
        for _ in range(calls):
            call()
        figures.append((time.process_time() - before) / calls * 1e6)
    return statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///./bench_http.db")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    found = asyncio.run(capture(args.database_url, args.customers))
    print(f"CPU us per call, median of {args.rounds} rounds of {args.calls} calls")
    print(f"{'workload':<34}{'rows':>6}{'rows()':>10}{'_grouped':>10}")
    for name, captured in found.items():
        for statement, raw, verifications in captured:
            read = statement.rows(raw)
            converting = cpu_us(lambda: statement.rows(raw), args.calls, args.rounds)  # noqa: B023
            grouping = (
                f"{cpu_us(lambda: customer_rows._grouped(read, verifications), args.calls, args.rounds):>10.1f}"  # noqa: B023, E501
                if verifications is not None
                else f"{'-':>10}"
            )
            print(f"{name:<34}{len(raw):>6}{converting:>10.1f}{grouping}")


if __name__ == "__main__":
    main()
