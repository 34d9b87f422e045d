"""The customer API server's entry point and command line: `customer-api` (.venv/bin after
`make env`), or `python server.py`.

customer-api [--host H] [--port P]     serve the API at http://H:P/graphql
customer-api export-schema             print the SDL (what graphql/schema.graphql holds)
customer-api settings-reference        print docs/settings.md (what `make docs` writes)
customer-api expire-kyc                expire stale PENDING verifications once
customer-api migrate                   bring the database to the latest schema
customer-api keys create|list|revoke   manage API keys (see --help)

The server itself lives in web/: its settings (web/settings.py), the app and its lifespan
(web/app.py), the background jobs (web/jobs.py), start-up checks (web/startup.py) and the
uvicorn runtime (web/serving.py). What tests and `uvicorn --factory server:create_app` use is
re-exported here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from db import keys, migrate
from db.engine import Database
from db.models import utc_now
from db.rules import Problem
from schema import schema
from schema.scalars import serialize
from web import dev_idp
from web.app import STOP_SECONDS, create_app, cursor_secret
from web.jobs import expire_kyc, prune_events
from web.logs import configure_logging
from web.serving import WORKER_PROTOCOL, parser, serve
from web.settings import ENV_FILE, Settings, load_settings, open_database
from web.settings_doc import reference
from web.startup import StartupProblem, guarded, prepare

__all__ = [
    "STOP_SECONDS",
    "WORKER_PROTOCOL",
    "Settings",
    "create_app",
    "cursor_secret",
    "expire_kyc",
    "main",
    "parser",
    "prune_events",
]

T = TypeVar("T")


async def run_command(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    """Run one command against the database, brought to the latest schema first."""
    db = open_database(settings, serving=False)
    try:
        await migrate.upgrade(db)
        return await action(db)
    finally:
        await db.dispose()


async def create_key_command(
    db: Database, name: str, scopes: Sequence[keys.Scope], **bucket: Any
) -> int:
    """`keys create`; `bucket` is the key's own max_cost and restore_rate, if given."""
    async with db.write() as session:
        try:
            key = await keys.create_key(session, name, scopes, utc_now(), keys.CLI, **bucket)
        except keys.KeyProblem as problem:
            print(problem, file=sys.stderr)
            return 1
    print(f"Created the key {name!r} with {', '.join(sorted(scopes))}. It is shown this once:")
    print(key)
    return 0


async def list_keys_command(db: Database) -> int:
    async with db.read() as session:
        rows = await keys.list_keys(session)
    print(f"{'name':<24} {'prefix':<14} {'created':<25} {'last used':<25} {'revoked':<25} "
          f"scopes; made by; revoked by")  # fmt: skip
    for row in rows:
        dates = [row.created_at, row.last_used_at, row.revoked_at]
        shown = [serialize(d) if d else "-" for d in dates]
        actors = f"{row.created_by or '-'}; {row.revoked_by or '-'}"
        print(f"{row.name:<24} {row.prefix + '…':<14} {shown[0]:<25} {shown[1]:<25} "
              f"{shown[2]:<25} {row.scopes}; {actors}")  # fmt: skip
    return 0


async def revoke_key_command(db: Database, name: str) -> int:
    async with db.write() as session:
        revoked = await keys.revoke_key(session, name, utc_now(), revoked_by=keys.CLI)
    if isinstance(revoked, Problem):
        print(revoked.message, file=sys.stderr)
        return 1
    print(f"Revoked the key {name!r}: requests with it now get 401.")
    return 0


async def keys_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.keys_command == "create":
        scopes = sorted(keys.ALL_SCOPES) if args.all_scopes else [keys.Scope(s) for s in args.scope]
        bucket = {"max_cost": args.max_cost, "restore_rate": args.restore_rate}
        return await run_command(
            settings, lambda db: create_key_command(db, args.name, scopes, **bucket)
        )
    if args.keys_command == "revoke":
        return await run_command(settings, lambda db: revoke_key_command(db, args.name))
    return await run_command(settings, list_keys_command)


VERBOSE = "show the migration tool's progress too"


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-api", description="The customer GraphQL API server."
    )
    parser.add_argument("--version", action="version", version=f"customer-api {version()}")
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    # -v before or after the command; a command's own default must not undo a -v given before.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("serve", help="serve the API (the default)", parents=[verbose])
    commands.add_parser("export-schema", help="print the schema's SDL")
    commands.add_parser(
        "settings-reference", help="print docs/settings.md, the settings' reference, from the code"
    )
    commands.add_parser(
        "expire-kyc", help="expire stale PENDING verifications once, then exit", parents=[verbose]
    )
    commands.add_parser(
        "migrate", help="bring the database to the latest schema, then exit", parents=[verbose]
    )
    key_commands = commands.add_parser("keys", help="create, list and revoke API keys")
    key_actions = key_commands.add_subparsers(dest="keys_command", required=True)
    create = key_actions.add_parser(
        "create", help="make a key; it is printed once, last", parents=[verbose]
    )
    create.add_argument("--name", required=True, help="a name people will recognise")
    chosen = create.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--scope",
        action="append",
        choices=sorted(scope.value for scope in keys.ALL_SCOPES),  # plain names in --help
        help="repeatable",
    )
    chosen.add_argument("--all-scopes", action="store_true", help="every scope")
    create.add_argument("--max-cost", type=int, help="points its rate-limit bucket holds")
    create.add_argument("--restore-rate", type=float, help="points a second its bucket regains")
    key_actions.add_parser(
        "list", help="name, prefix, scopes, created and last used", parents=[verbose]
    )
    revoke = key_actions.add_parser("revoke", help="refuse the key from now on", parents=[verbose])
    revoke.add_argument("name")
    dev_idp.add_commands(commands)
    return parser


def version() -> str:
    """This program's version: the installed package's, else the checkout's pyproject.toml."""
    try:
        return metadata.version("customer-api")
    except metadata.PackageNotFoundError:
        with (Path(__file__).resolve().parent / "pyproject.toml").open("rb") as file:
            found: str = tomllib.load(file)["project"]["version"]
            return found


def main(argv: Sequence[str] | None = None) -> int:
    args = command_line().parse_args(argv)
    if args.command in ("dev-idp", "dev-token"):
        return dev_idp.run_command(args)
    if args.command == "export-schema":
        sys.stdout.write(schema.as_str() + "\n")
        return 0
    if args.command == "settings-reference":
        sys.stdout.write(reference())
        return 0
    try:
        settings = settings_of(args)
        return run(args, settings)
    except StartupProblem as problem:
        print(f"customer-api: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before serving began: stop quietly
        return 0


def settings_of(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        return load_settings(**overrides)
    except ValidationError as error:
        lines = [setting_problem(e["loc"], e["msg"], e["type"]) for e in error.errors()]
        raise StartupProblem("cannot start, a setting is wrong:\n  " + "\n  ".join(lines)) from None


def setting_problem(location: tuple[int | str, ...], message: str, kind: str) -> str:
    """One wrong setting, by its environment name: never its value, which may be a secret."""
    message = message.removeprefix("Value error, ")
    if kind == "extra_forbidden":  # a line of ENV_FILE that names no setting (a typo?)
        message = f"not a setting of this server (in {ENV_FILE}; docs/settings.md lists them)"
    if not location:
        return message  # a rule over several settings: the message names them
    return f"{'.'.join(str(part) for part in location).upper()}: {message}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    debug = settings.log_level.lower() == "debug"
    # Alembic's progress ("Context impl SQLiteImpl.") is chatter around a command's answer:
    # shown when asked for. What a start migrated is logged by web/startup.py.
    logging.getLogger("alembic").setLevel(
        logging.NOTSET if args.verbose or debug else logging.WARNING
    )
    if args.command == "migrate":
        revision = guarded(settings, debug, lambda: run_command(settings, migrate.current_revision))
        print(f"database at revision {revision}")
        return 0
    if args.command == "expire-kyc":
        expired = guarded(
            settings, debug, lambda: run_command(settings, lambda db: expire_kyc(db, settings))
        )
        print(f"expired {expired} KYC verifications")
        return 0
    if args.command == "keys":
        return guarded(settings, debug, lambda: keys_command(args, settings))
    guarded(settings, debug, lambda: prepare(settings))
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
