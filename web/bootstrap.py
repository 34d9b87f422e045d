"""The first key: made on a database that has none, and written to a file only its owner may
read."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from db import keys
from db.engine import Database
from schema.context import Clock
from web.hints import command


async def bootstrap_key(db: Database, clock: Clock, path: Path) -> None:
    """On a database with no key at all, make one with every scope and write it to `path`.

    The file is made readable by its owner only (0600); the key never reaches stdout or the
    log, which process managers often keep together: only the file's path is printed, on
    stderr. The next start finds a key and says nothing. Servers starting together race for
    the key's name: one wins, and only the winner writes the file.
    """
    async with db.read() as session:  # a read first: a held write lock must not stop a start
        if await keys.count_keys(session):
            return
    async with db.write() as session:
        if await keys.count_keys(session):
            return
        try:
            key = await keys.create_key(
                session, "bootstrap", keys.ALL_SCOPES, clock(), created_by=keys.BOOTSTRAP
            )
        except keys.KeyProblem:
            return
        write_private(path, key + "\n")  # before the commit: no key is made that nobody has
    announce_bootstrap_key(path)


def announce_bootstrap_key(path: Path) -> None:
    print(
        "\nNo API key existed, so one with every scope was made and written to\n\n"
        f"    {path.resolve()}\n\n"
        "(readable by this user only). Keep it somewhere safe and delete the file. In GraphiQL "
        "(http://<host>:<port>/graphql) put it in the Headers tab as\n"
        '    {"Authorization": "Bearer <the key>"}\n'
        f"Make narrower keys with: {command('keys create --name NAME --scope SCOPE')}\n",
        file=sys.stderr,
        flush=True,
    )


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(descriptor, 0o600)  # an existing file keeps its old mode otherwise
        file.write(text)
