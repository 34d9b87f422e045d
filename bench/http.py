"""This server against a raw ceiling, over real HTTP, with wrk: req/s, latency, CPU per request.

    python -m bench.http [--backend sqlite|postgresql|both] [--short] [--customers 10000]
                         [--rounds 4] [--seconds 10] [--connections 32] [--tracing]

It seeds a database (or reuses one that has enough customers: ./bench_http.db, or the
`bench_http` database beside TEST_POSTGRES_URL's), starts `python server.py` and
`bench.ceiling` (bare Starlette + orjson on uvloop/httptools, the same tables and statements,
the same key check against an in-memory table, the same JSON), each pinned to one core, and
drives them with wrk (Debian's `wrk`) from the other core, interleaved A B A B: per round,
each workload against ours, then against the ceiling. Before timing, it checks that both
answer each workload with the same JSON (and says whether the bytes are identical too).

The write workloads run 32 concurrent writers (the connections): their error count and
p99/p50 are printed, since SQLite serialises writers. `--short` is a quick look: 2 rounds
of 3 s on 2,000 customers.

Profile the server under the same load with py-spy (see `--profile`): it writes a flame
graph of one workload to artifacts/profile-<workload>.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.seed import seed
from db import keys, migrate
from db.engine import Database
from db.models import ApiKey, Customer, utc_now

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "graphql" / "operations"
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
READY = re.compile(r"Uvicorn running on (http://\S+)")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    name: str
    document: str
    lua_body: str  # a Lua expression giving the variables' JSON for one request
    ok: str  # text every good answer holds
    ceiling: str  # which of bench.ceiling's handlers answers it
    variables: dict[str, Any]  # a sample of its variables (for probing both servers)
    writes: bool = False


# The heavy list: a page of 50 with every data field and the verifications' type, status and
# createdAt (what a back office's customer table shows).
HEAVY_LIST = """query HeavyList($first: Int) {
  customers(first: $first) {
    pageInfo {
      hasNextPage
      hasPreviousPage
      startCursor
      endCursor
    }
    edges {
      cursor
      node {
        id
        externalCustomerId
        data {
          email
          phone
          firstName
          lastName
          street
          street2
          state
          city
          zip
          country
        }
        kycStatus
        kycVerifications {
          type
          status
          createdAt
        }
        createdAt
        updatedAt
      }
    }
  }
}
"""
REVIEW_QUEUE = {"first": 50, "filter": {"kycStatus": ["UNDER_REVIEW"]}}
BY_EXTERNAL_ID = {"first": 50, "orderBy": {"field": "EXTERNAL_CUSTOMER_ID", "direction": "ASC"}}


def workloads(customers: int) -> list[Workload]:
    def op(name: str) -> str:
        return (OPERATIONS / f"{name}.graphql").read_text()

    n = random.randrange(1 << 30)
    return [
        Workload(
            "customers(first: 50)",
            op("customers"),
            "'{\"first\":50}'",
            '"edges":[{"cursor"',
            "customers",
            {"first": 50},
        ),
        Workload(
            "customer(externalCustomerId)",
            op("customer"),
            f'string.format(\'{{"externalCustomerId":"cus_%08d"}}\', math.random(1, {customers}))',
            '"customer":{"id"',
            "customer",
            {"externalCustomerId": "cus_00000001"},
        ),
        Workload(
            "createCustomer",
            op("create_customer"),
            'string.format(\'{"input":{"externalCustomerId":"%s-%d","data":'
            '{"email":"%s-%d@example.com","phone":"(201) 555-0123","firstName":"Ann",'
            '"lastName":"Lee","city":"Boston","state":"MA","zip":"02110","country":"US"}}}\','
            " prefix, counter, prefix, counter)",
            '"userErrors":[]',
            "createCustomer",
            {
                "input": {
                    "externalCustomerId": f"probe-{n}",
                    "data": {"email": f"probe-{n}@example.com"},
                }
            },
            writes=True,
        ),
        Workload(
            "updateCustomer",
            op("update_customer"),
            'string.format(\'{"input":{"externalCustomerId":"cus_%08d","data":'
            '{"firstName":"%s"}}}\', math.random(1, '
            f"{customers}), names[math.random(1, #names)])",
            '"userErrors":[]',
            "updateCustomer",
            {"input": {"externalCustomerId": "cus_00000002", "data": {"firstName": f"P{n}"}}},
            writes=True,
        ),
        Workload(
            "heavy list(first: 50)",
            HEAVY_LIST,
            "'{\"first\":50}'",
            '"edges":[{"cursor"',
            "heavy",
            {"first": 50},
        ),
        Workload(
            "review queue(kycStatus)",
            op("customers"),
            lua_string(json.dumps(REVIEW_QUEUE, separators=(",", ":"))),
            '"edges":[',
            "customers",
            REVIEW_QUEUE,
        ),
        Workload(
            "customers(EXTERNAL_CUSTOMER_ID)",
            op("customers"),
            lua_string(json.dumps(BY_EXTERNAL_ID, separators=(",", ":"))),
            '"edges":[{"cursor"',
            "customers",
            BY_EXTERNAL_ID,
        ),
    ]


LUA = """
local threads = {}
counter = 0
errors = 0
names = {"Ann", "Bob", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jack"}
local head = %(head)s
local headers = {["content-type"] = "application/json", ["authorization"] = %(auth)s}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = string.format("b%%d-%%d-%%d", os.time(), math.random(1, 1000000), tid)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local body = head .. %(variables)s .. "}"
  return wrk.format("POST", "/graphql", headers, body)
end

function response(status, hdrs, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true)
     or not string.find(body, %(ok)s, 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("errors") end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    bad + e.connect + e.read + e.write + e.timeout))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal here (no \\u escapes)


def script(workload: Workload, key: str, folder: Path) -> Path:
    head = '{"query":' + json.dumps(workload.document, ensure_ascii=True) + ',"variables":'
    path = folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', workload.name).strip('_')}.lua"
    path.write_text(
        LUA
        % {
            "head": lua_string(head),
            "auth": lua_string(f"Bearer {key}"),
            "variables": workload.lua_body,
            "ok": lua_string(workload.ok),
        }
    )
    return path


@dataclass
class Figures:
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    cpu_seconds: float = 0.0
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.requests if self.requests else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(url: str, lua: Path, seconds: float, connections: int, core: str | None) -> list[int]:
    command = [
        # wrk reads whole seconds ("5.0s" is refused).
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "30s",
        "-s", str(lua), url + "/graphql",
    ]  # fmt: skip
    if core is not None:
        command = ["taskset", "-c", core, *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^RESULT (.*)$", output, re.MULTILINE)
    assert match, output
    return [int(n) for n in match.group(1).split()]


@dataclass
class Process:
    url: str
    pid: int


@contextmanager
def started(command: list[str], env: dict[str, str], core: str | None) -> Iterator[Process]:
    """A server process on a free port, until the block ends; its log goes to a file."""
    if core is not None:
        command = ["taskset", "-c", core, *command]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, text=True)
        try:
            deadline = time.monotonic() + 60
            url = None
            while url is None:
                assert process.poll() is None, "the server exited: " + _read(log)
                assert time.monotonic() < deadline, "the server did not start: " + _read(log)
                if match := READY.search(_read(log)):
                    url = match.group(1)
                else:
                    time.sleep(0.1)  # polling a log file for a line, with a deadline
            yield Process(url, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)


@dataclass
class Collector:
    url: str
    exports: int = 0
    bytes: int = 0


@contextmanager
def collector() -> Iterator[Collector]:
    """An OTLP/HTTP collector on 127.0.0.1 that takes every export and drops it, in a thread
    of this process: what is measured is the server's cost (making, encoding and sending its
    spans), not a tracing backend's."""
    sink: Collector

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            sink.exports += 1
            sink.bytes += len(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink = Collector(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


def _read(log: Any) -> str:
    log.seek(0)
    text: str = log.read()
    return text


async def prepare(url: str, customers: int) -> str:
    """A database whose customers cus_00000001 ... cus_<N> all exist (the reads and updates
    pick among them), and a key with every scope; returns the key. A database of the bench's
    own that lacks some is made again: created customers take ids between seeded ones."""
    target = make_url(url)
    postgres = target.get_backend_name() == "postgresql"
    last = f"cus_{customers:08d}"
    db = Database(url) if not postgres or await _pg_exists(target) else None
    if db is not None:
        await migrate.upgrade(db)
        async with db.read() as session:
            have = (
                await session.execute(
                    select(func.count())
                    .select_from(Customer)
                    .where(Customer.external_customer_id.between("cus_00000001", last))  # type: ignore[attr-defined]
                )
            ).scalar_one()
        await db.dispose()
        if have < customers:
            await _drop(target)
            db = None
    if db is None:
        if postgres:
            await _pg_admin(target, f'CREATE DATABASE "{target.database}"')
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        await seed(url, customers)
    db = Database(url)
    async with db.write() as session:
        name = f"bench-{random.randrange(1 << 30)}"
        # A bucket no run empties: the limiter does its whole work on every request (the
        # analysis, the draw) without refusing any, so what it costs is in the figures.
        unlimited = keys.MAX_BUCKET
        key = await keys.create_key(
            session,
            name,
            keys.ALL_SCOPES,
            utc_now(),
            max_cost=unlimited,
            restore_rate=unlimited,
        )
        await session.execute(
            ApiKey.__table__.delete().where(  # type: ignore[attr-defined]
                ApiKey.name.like("bench-%"),  # type: ignore[attr-defined]
                ApiKey.name != name,
            )
        )
    await db.dispose()
    return key


async def _pg_admin(target: Any, sql: str) -> Any:
    admin = target.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        return await connection.fetchval(sql, *([target.database] if "$1" in sql else []))
    finally:
        await connection.close()


async def _pg_exists(target: Any) -> bool:
    return bool(await _pg_admin(target, "SELECT 1 FROM pg_database WHERE datname = $1"))


async def _drop(target: Any) -> None:
    """Remove the bench's database, to seed it afresh."""
    if target.get_backend_name() == "postgresql":
        await _pg_admin(target, f'DROP DATABASE "{target.database}"')
    else:
        _remove_sqlite(str(target.database))


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def probe(url: str, key: str, workload: Workload, variables: dict[str, Any]) -> bytes:
    response = httpx.post(
        url + "/graphql",
        json={"query": workload.document, "variables": variables},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text
    return response.content


def _unmetered(answer: bytes) -> Any:
    """An answer's JSON without extensions.cost.throttleStatus."""
    body = json.loads(answer)
    body.get("extensions", {}).get("cost", {}).pop("throttleStatus", None)
    return body


def same_answers(ours: str, ceiling: str, key: str, loads: list[Workload]) -> None:
    """Both answer the read workloads alike (the same JSON; bytes compared too)."""
    for workload in loads:
        if workload.writes:
            continue
        variables = workload.variables
        a, b = probe(ours, key, workload, variables), probe(ceiling, key, workload, variables)
        # The ceiling repeats the throttleStatus ours gave once; ours has drawn since.
        assert _unmetered(a) == _unmetered(b), f"{workload.name}: the answers differ"
        print(f"  {workload.name}: same JSON; bytes {'identical' if a == b else 'differ'}")


def bench_backend(url: str, args: argparse.Namespace) -> dict[str, tuple[Figures, Figures]]:
    key = asyncio.run(prepare(url, args.customers))
    loads = [w for w in workloads(args.customers) if args.only in w.name]
    server_core, client_core = (None, None) if args.no_pin else ("1", "0")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        **({"OTEL_EXPORTER_OTLP_ENDPOINT": args.otlp_endpoint} if args.otlp_endpoint else {}),
        "DATABASE_URL": url,
        "KYC_SWEEP_INTERVAL_SECONDS": "0",
        "MIGRATE_ON_START": "false",
        "CURSOR_SECRET": f"bench-{random.randrange(1 << 62)}",  # both sign cursors with it
        "PYTHONUNBUFFERED": "1",
    }
    results = {w.name: (Figures(), Figures()) for w in loads}
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        scripts = {w.name: script(w, key, folder) for w in loads}
        server_cmd = [sys.executable, "server.py", "--port", "0"]
        with started(server_cmd, env, server_core) as ours:
            # The ceiling reports the same extensions (the cost) as ours, read from ours.
            answers = {}
            for w in loads:
                body = json.loads(probe(ours.url, key, w, w.variables))
                answers[w.document] = {"workload": w.ceiling, "extensions": body.get("extensions")}
            (folder / "answers.json").write_text(json.dumps(answers))
            ceiling_cmd = [
                sys.executable, "-m", "bench.ceiling", "--database-url", url,
                "--answers", str(folder / "answers.json"),
            ]  # fmt: skip
            with started(ceiling_cmd, env, server_core) as ceiling:
                same_answers(ours.url, ceiling.url, key, loads)
                if args.profile:
                    profile(ours, scripts, args, client_core)
                    return {}
                for round_ in range(args.rounds):
                    for w in loads:
                        for target, figures in zip((ours, ceiling), results[w.name], strict=True):
                            before = cpu_seconds(target.pid)
                            requests, micros, p50, p99, errors = wrk(
                                target.url, scripts[w.name], args.seconds, args.connections,
                                client_core,
                            )  # fmt: skip
                            figures.cpu_seconds += cpu_seconds(target.pid) - before
                            figures.requests += requests
                            figures.seconds += micros / 1e6
                            figures.errors += errors
                            figures.p50.append(p50 / 1000)
                            figures.p99.append(p99 / 1000)
                    print(f"  round {round_ + 1} of {args.rounds} done", flush=True)
    return results


def profile(
    ours: Process, scripts: dict[str, Path], args: argparse.Namespace, core: str | None
) -> None:
    """py-spy records ours while wrk drives one workload: a flame graph per workload."""
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    for name, lua in scripts.items():
        if args.profile != "all" and not name.startswith(args.profile):
            continue
        kind = "txt" if args.collapsed else "svg"
        target = out / f"profile-{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.{kind}"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(ours.pid), "--duration", str(int(args.seconds)),
             "--output", str(target), "--rate", "250",
             "--format", "raw" if args.collapsed else "flamegraph"],
        )  # fmt: skip
        wrk(ours.url, lua, args.seconds, args.connections, core)
        recorder.wait(timeout=args.seconds + 60)
        print(f"  {name}: {target}")


def report(backend: str, results: dict[str, tuple[Figures, Figures]]) -> None:
    print(f"\n{backend}:")
    print(
        f"{'workload':<30} {'ours req/s':>10} {'ceiling':>8} {'ratio':>6} "
        f"{'CPU ms/req ours/ceil':>21} {'p50 ms ours/ceil':>17} {'p99 ms ours/ceil':>17} "
        f"{'errors':>7}"
    )
    for name, (ours, ceiling) in results.items():
        ratio = ours.rate / ceiling.rate if ceiling.rate else 0.0
        print(
            f"{name:<30} {ours.rate:>10,.1f} {ceiling.rate:>8,.1f} {ratio:>6.3f} "
            f"{ours.cpu_ms:>10.2f} / {ceiling.cpu_ms:<8.3f} "
            f"{statistics.median(ours.p50):>7.1f} / {statistics.median(ceiling.p50):<7.1f} "
            f"{statistics.median(ours.p99):>7.1f} / {statistics.median(ceiling.p99):<7.1f} "
            f"{ours.errors:>3}/{ceiling.errors:<3}"
        )
    for name, (ours, _) in results.items():
        if name.startswith(("create", "update")):
            spread = statistics.median(ours.p99) / max(statistics.median(ours.p50), 1e-9)
            print(f"  ours, {name} under 32 writers: {ours.errors} errors, p99/p50 {spread:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sqlite-url", default="sqlite+aiosqlite:///./bench_http.db")
    parser.add_argument(
        "--postgres-url",
        default=make_url(POSTGRES_URL).set(database="bench_http").render_as_string(False),
    )
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--short", action="store_true", help="2 rounds of 3 s, 2,000 customers")
    parser.add_argument(
        "--only", default="", help="the workloads whose name holds this (all by default)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--profile",
        metavar="WORKLOAD",
        help="instead of timing, record py-spy flame graphs of ours: a workload's first word "
        "(customers, customer, createCustomer, updateCustomer, heavy, review) or all",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="ours with tracing on: OTLP/HTTP to a collector on 127.0.0.1 that drops the spans "
        "(started here); without it, tracing is off (OTEL_* are not passed on)",
    )
    parser.add_argument(
        "--collapsed",
        action="store_true",
        help="with --profile: collapsed stacks (.txt, one line per stack) instead of an SVG",
    )
    args = parser.parse_args()
    if args.short:
        args.rounds, args.seconds, args.customers = 2, 3, min(args.customers, 2_000)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with collector() if args.tracing else nullcontext(None) as sink:
        args.otlp_endpoint = sink.url if sink else None
        for backend in backends:
            bench_one(backend, args)
        if sink:
            print(f"\nthe collector took {sink.exports:,} exports, {sink.bytes:,} bytes of spans")


def bench_one(backend: str, args: argparse.Namespace) -> None:
    url = args.sqlite_url if backend == "sqlite" else args.postgres_url
    print(
        f"{backend}: {args.rounds} rounds of {args.seconds:g} s per workload and server, "
        f"{args.connections} connections, {args.customers:,} customers, tracing "
        f"{'on (OTLP/HTTP to ' + args.otlp_endpoint + ')' if args.otlp_endpoint else 'off'}",
        flush=True,
    )
    results = bench_backend(url, args)
    if results:
        report(backend, results)


if __name__ == "__main__":
    main()
