"""The customer API server: settings, the Starlette app, and the command line.

python server.py [--host H] [--port P]     serve the API at http://H:P/graphql
python server.py export-schema             print the SDL (what graphql/schema.graphql holds)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from cross_web import HTTPException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from db.engine import Database
from db.rules import Environment
from schema import schema
from schema.context import Context

logger = logging.getLogger("customer_api")


class Settings(BaseSettings):
    """Every setting of the server, read from the environment (names in upper case) once."""

    model_config = SettingsConfigDict(frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///./customers.db",
        description="SQLAlchemy URL of the database: a SQLite file or postgresql+asyncpg://...",
    )
    environment: Environment = Field(
        default=Environment.PRODUCTION,
        description="production enforces every rule; sandbox accepts disposable and +suffix "
        "e-mails with a warning.",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, description="Port to listen on.")
    db_pool_size: int = Field(default=5, ge=1, description="Connections kept open in the pool.")
    db_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections opened under load beyond the pool."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the write lock."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view, with a fresh context (and loaders) for every request."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.db = db
        self.settings = settings

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(db=self.db, environment=self.settings.environment)

    def parse_json(self, data: str | bytes) -> Any:
        parsed = super().parse_json(data)
        # Strawberry reads fields off whatever the JSON was; anything but an object (or a
        # batch, which it checks itself) would reach it as a str or int and raise a 500.
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return parsed


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app: /graphql serves the API (and GraphiQL to a browser)."""
    settings = settings or Settings()
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await db.create_tables()
        yield
        await db.dispose()

    async def home(_request: Request) -> Response:
        return RedirectResponse("/graphql")

    app = Starlette(
        routes=[Route("/", home), Route("/graphql", GraphQLView(db, settings))],
        lifespan=lifespan,
    )
    app.state.db = db
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The customer GraphQL API server.")
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("export-schema", help="print the schema's SDL")
    args = parser.parse_args(argv)

    if args.command == "export-schema":
        sys.stdout.write(schema.as_str() + "\n")
        return 0

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logger.info("serving on http://%s:%s/graphql", settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
    )
    asyncio.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
