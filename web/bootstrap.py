"""The first key: made on a database that has none, and written to a new file only its owner may
read (never over another file: that may hold another database's key)."""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import make_url

from db import keys
from db.engine import Database
from schema.context import Clock
from web.hints import command


async def bootstrap_key(db: Database, clock: Clock, path: Path) -> Path | None:
    """On a database with no key at all, make one with every scope and write it to a new
    file: `path`, or, when that exists, a name beside it that says which database the key
    belongs to. Returns the file written, None when the database had a key.

    The file is made readable by its owner only (0600); the key never reaches stdout or the
    log, which process managers often keep together: only the file's path is printed, on
    stderr. The next start finds a key and says nothing. Servers starting together race for
    the key's name: one wins, and only the winner writes the file.
    """
    async with db.read() as session:  # a read first: a held write lock must not stop a start
        if await keys.count_keys(session):
            return None
    async with db.write() as session:
        if await keys.count_keys(session):
            return None
        try:
            key = await keys.create_key(
                session, "bootstrap", keys.ALL_SCOPES, clock(), created_by=keys.BOOTSTRAP
            )
        except keys.KeyProblem:
            return None
        # Before the commit: no key is made that nobody has.
        written = write_new_private(key_files(path, database_label(db.url)), key + "\n")
    announce_bootstrap_key(written, path)
    return written


def database_label(url: str) -> str:
    """Which database a URL names, fit for a file name: the backend, and the host, port and
    database of a server, or the file of SQLite (never the user or the password)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parts = [backend, Path(parsed.database or "memory").name]
    else:
        parts = [backend, parsed.host or "localhost", str(parsed.port or ""), parsed.database or ""]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(part for part in parts if part))


def key_files(path: Path, label: str) -> Iterator[Path]:
    """`path`, then names beside it with the database's label (and a number, should even
    that exist: the same database made again, say)."""
    yield path
    yield path.with_name(f"{path.stem}.{label}{path.suffix}")
    for number in itertools.count(2):
        yield path.with_name(f"{path.stem}.{label}.{number}{path.suffix}")


def write_new_private(paths: Iterator[Path], text: str) -> Path:
    """Write `text` to the first of `paths` that does not exist yet, made readable by its
    owner only; never over an existing file, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for path in paths:
        try:
            descriptor = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        return path
    raise AssertionError("key_files is endless")


def announce_bootstrap_key(written: Path, asked: Path) -> None:
    beside = ""
    if written != asked:
        beside = (
            f"BOOTSTRAP_KEY_FILE ({asked}) exists already, holding another database's key; it "
            "was left as it was.\n"
        )
    print(
        "\nNo API key existed, so one with every scope was made and written to\n\n"
        f"    {written.resolve()}\n\n"
        "(readable by this user only). Keep it somewhere safe and delete the file. In GraphiQL "
        "(http://<host>:<port>/graphql) put it in the Headers tab as\n"
        '    {"Authorization": "Bearer <the key>"}\n'
        f"{beside}"
        f"Make narrower keys with: {command('keys create --name NAME --scope SCOPE')}\n",
        file=sys.stderr,
        flush=True,
    )
