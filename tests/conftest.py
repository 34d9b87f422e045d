"""Shared fixtures: a database per test on each backend, the app over HTTP, the operations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import event
from starlette.applications import Starlette

from db.engine import Database
from db.rules import Environment
from server import Settings, create_app
from tests.databases import BACKENDS, TEST_API_KEY, Databases
from tests.identity import IdentityProvider, identity_provider
from tests.log_privacy import RUN_LOG, personal_data_in
from tests.node_tools import find_chromium, find_node

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "graphql" / "operations"


def operation(name: str) -> str:
    """The text of graphql/operations/<name>.graphql."""
    return (OPERATIONS / f"{name}.graphql").read_text()


@pytest.fixture(scope="session", autouse=True)
def run_log() -> Iterator[None]:
    """Collect every log record of the run (at INFO, the server's default) for the scan."""
    RUN_LOG.parent.mkdir(exist_ok=True)
    RUN_LOG.write_text("")
    handler = logging.FileHandler(RUN_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any log line of it holds an e-mail address or a phone number."""
    if not RUN_LOG.exists():
        return
    with RUN_LOG.open() as log:
        leaks = personal_data_in(log)
    if leaks:
        print("\nPersonal data in the log of this run (artifacts/test-run.log):")
        for line in leaks[:20]:
            print("  ", line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def node() -> str:
    """The path of Node, with `npm ci`'s node_modules beside it (else skip; in CI, fail)."""
    return find_node()


@pytest.fixture
def browser(node: str) -> str:
    """Node, with Debian's Chromium there for Playwright to drive (else skip; in CI, fail)."""
    find_chromium()
    return node


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    found = Databases(tmp_path_factory.mktemp("databases"))
    yield found
    found.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that touches a database runs once on SQLite and once on PostgreSQL."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(databases: Databases, backend: str) -> Iterator[str]:
    """A migrated database of the test's own."""
    url = databases.url_for(backend)
    yield url
    databases.drop(url)


@pytest.fixture
def environment() -> Environment:
    return Environment.PRODUCTION


class Clock:
    """A clock the test moves by hand, so time-based rules are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 5, 4, 57, 11, 151000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    """Settings a test module changes from the defaults (override this fixture)."""
    return {}


@pytest.fixture
def settings(
    database_url: str, environment: Environment, setting_overrides: dict[str, Any]
) -> Settings:
    # The background sweep is off: tests run sweeps themselves, against the test's clock. The
    # start-up migration is off too: every test database is a copy of a migrated template
    # (test_server_process.py's first start on a new file proves that the migration runs).
    # Connecting may be slow on a shared, loaded machine; the default bounds are proven by
    # tests/test_faults.py against real server processes.
    defaults: dict[str, Any] = {
        "kyc_sweep_interval_seconds": 0,
        "migrate_on_start": False,
        "db_connect_timeout_seconds": 10,
        # So is the webhook worker (its statements would run beside the test's):
        # tests/test_webhooks.py turns it on.
        "webhook_worker": False,
    }
    return Settings(
        database_url=database_url, environment=environment, **{**defaults, **setting_overrides}
    )


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[Starlette]:
    app = create_app(settings, clock)
    async with LifespanManager(app):
        yield app


@pytest.fixture
def db(app: Starlette) -> Database:
    database: Database = app.state.db
    return database


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        yield client


@pytest.fixture
async def anonymous(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app over HTTP with no credential: each test sends its own."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class GraphQLClient:
    """Runs the committed operation documents over HTTP and returns their `data`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post("/graphql", json={"query": query, "variables": variables})

    async def run(self, name: str, **variables: Any) -> dict[str, Any]:
        """Run graphql/operations/<name>.graphql; fail on any GraphQL error."""
        response = await self.post(operation(name), variables)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def create(self, external_id: str, **data: Any) -> dict[str, Any]:
        """createCustomer's payload for this id and data (an e-mail is made up if not given)."""
        data.setdefault("email", f"{external_id}@example.com")
        result = await self.run(
            "create_customer", input={"externalCustomerId": external_id, "data": data}
        )
        payload: dict[str, Any] = result["createCustomer"]
        return payload

    async def update(self, external_id: str, **patch: Any) -> dict[str, Any]:
        result = await self.run(
            "update_customer", input={"externalCustomerId": external_id, "data": patch}
        )
        payload: dict[str, Any] = result["updateCustomer"]
        return payload

    async def start_kyc(self, external_id: str) -> dict[str, Any]:
        result = await self.run("start_kyc_verification", input={"externalCustomerId": external_id})
        payload: dict[str, Any] = result["startKycVerification"]
        return payload

    async def record_kyc(self, verification_id: str, status: str) -> dict[str, Any]:
        result = await self.run(
            "record_kyc_result", input={"verificationId": verification_id, "status": status}
        )
        payload: dict[str, Any] = result["recordKycResult"]
        return payload

    async def review_kyc(self, verification_id: str, decision: str) -> dict[str, Any]:
        result = await self.run(
            "review_kyc_verification",
            input={"verificationId": verification_id, "decision": decision},
        )
        payload: dict[str, Any] = result["reviewKycVerification"]
        return payload

    async def customer(self, external_id: str) -> dict[str, Any] | None:
        result = await self.run("customer", externalCustomerId=external_id)
        customer: dict[str, Any] | None = result["customer"]
        return customer


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    """An identity provider on 127.0.0.1 that signs tokens (customers:self, readers...), for
    the tests that sign in with them; a module's tests share it."""
    with identity_provider() as provider:
        yield provider


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements on customer data run inside the block.

    The API key's look-up (one per request, and its last-used stamp once a minute) is left
    out: it is the same for every request, and the tests are about what grows with the data.
    The stamp is written in the background, so on SQLite its `BEGIN IMMEDIATE` (which names
    no table) can land inside the block: left out too. Reads send no BEGIN at all.
    """
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_key" not in statement and statement != "BEGIN IMMEDIATE":
            statements.append(statement)

    def record_driver(statement: str) -> None:  # the compiled path's (db/driver.py)
        record(None, None, statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    db.statement_observers.append(record_driver)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        db.statement_observers.remove(record_driver)


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The message of a request /graphql refused before it ran (web/refusals.py): the status,
    a GraphQL-shaped JSON body with the code and no `data`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(
        ("application/json", "application/graphql-response+json")
    )
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"] == {"code": code}
    message: str = error["message"]
    return message
