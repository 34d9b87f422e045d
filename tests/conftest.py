"""Shared fixtures: a database per test on each backend, the app on each executor, over HTTP.

Every test that touches a database runs once on SQLite and once on PostgreSQL; one marked
`sqlite_only` (or in a module so marked) runs on SQLite alone. Every test marked
`both_executors` (most often by its module: those whose requests the compiled path can answer)
runs once with the compiled path on and once with graphql-core executing every request, as
Strawberry's own HTTP tests run one suite over every integration: the test ids say which,
`[sqlite-compiled]`, `[postgresql-graphql-core]`. A test marked `one_executor(reason)` runs
with the server's default (the compiled path on) alone, for the reason given. Any other test
whose request the compiled path answered fails, saying so: which executors prove a behaviour
is a decision written down, never an accident.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from db.engine import Database
from db.rules import Environment
from server import Settings, create_app
from tests.support.clock import Clock
from tests.support.databases import BACKENDS, TEST_API_KEY, Databases
from tests.support.graphql_client import GraphQLClient
from tests.support.identity import IdentityProvider, identity_provider
from tests.support.log_privacy import RUN_LOG, personal_data_in
from tests.support.node_tools import find_chromium, find_node

# The executors a `both_executors` module runs on: the compiled_path setting, by test id.
EXECUTORS = {"compiled": True, "graphql-core": False}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test over the backends (SQLite alone if marked `sqlite_only`) and, if its module
    is marked `both_executors`, over the executors; a test that parametrizes either itself
    keeps its own."""
    marked = metafunc.definition.get_closest_marker
    if "backend" in metafunc.fixturenames and not _parametrizes(metafunc, "backend"):
        backends = ["sqlite"] if marked("sqlite_only") else list(BACKENDS)
        metafunc.parametrize("backend", backends, indirect=True)
    if (
        "compiled_path" in metafunc.fixturenames
        and _executors(metafunc.definition) == "both"
        and not _parametrizes(metafunc, "compiled_path")
    ):
        metafunc.parametrize(
            "compiled_path", list(EXECUTORS.values()), ids=list(EXECUTORS), indirect=True
        )


def _executors(item: pytest.Item) -> str | None:
    """ "both", "one" (a test's own `one_executor` outranks its module's `both_executors`), or
    None when the test has not said."""
    if item.get_closest_marker("one_executor"):
        return "one"
    if item.get_closest_marker("both_executors"):
        return "both"
    return None


def _parametrizes(metafunc: pytest.Metafunc, name: str) -> bool:
    """Whether a parametrize mark of the test names the argument itself."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names: str | Sequence[str] = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(names, str):
            names = [part.strip() for part in names.split(",")]
        if name in names:
            return True
    return False


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
    # httpx logs each request's URL at INFO: a test's own GETs carry made-up documents and
    # variables in theirs, which are the tests' words, not the server's log.
    client_log = logging.getLogger("httpx")
    client_level = client_log.level
    client_log.setLevel(logging.WARNING)
    yield
    client_log.setLevel(client_level)
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


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The test's database server: "sqlite" or "postgresql" (pytest_generate_tests)."""
    name: str = request.param
    return name


@pytest.fixture
def compiled_path(request: pytest.FixtureRequest) -> bool:
    """Whether the app answers what it can from the compiled path (the server's default) or
    graphql-core executes every request: both, in a `both_executors` module."""
    on: bool = getattr(request, "param", True)
    return on


@pytest.fixture
def database_url(databases: Databases, backend: str) -> Iterator[str]:
    """A migrated database of the test's own."""
    url = databases.url_for(backend)
    yield url
    databases.drop(url)


@pytest.fixture
def environment() -> Environment:
    return Environment.PRODUCTION


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def setting_overrides() -> dict[str, Any]:
    """Settings a test module changes from the defaults (override this fixture)."""
    return {}


@pytest.fixture
def settings(
    database_url: str,
    environment: Environment,
    compiled_path: bool,
    setting_overrides: dict[str, Any],
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
        "compiled_path": compiled_path,
        # The test's clock stands still, so no bucket refills: every request of a test draws
        # from one bucket, which holds enough for any test. tests/test_rate_limits.py sets
        # small ones and moves the clock.
        "rate_limit_max_cost": 1_000_000_000,
    }
    return Settings(
        database_url=database_url, environment=environment, **{**defaults, **setting_overrides}
    )


@pytest.fixture
async def app(
    settings: Settings, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[Starlette]:
    app = create_app(settings, clock)
    async with LifespanManager(app):
        yield app
    answered: int = app.state.view.compiled_answers
    if answered and _executors(request.node) is None:
        pytest.fail(
            f"The compiled path answered {answered} request(s) of this test, which says not "
            "on which executors it runs: mark it (or its module) `both_executors`, so that "
            "graphql-core's answers are tested too, or `one_executor(reason)` "
            "(tests/conftest.py).",
            pytrace=False,
        )


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


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    """An identity provider on 127.0.0.1 that signs tokens (customers:self, readers...), for
    the tests that sign in with them; a module's tests share it."""
    with identity_provider() as provider:
        yield provider


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)
