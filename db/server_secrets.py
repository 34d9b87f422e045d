"""Secrets the server makes for itself and keeps in the database, so replicas share them."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.models import ServerSecret


async def shared_secret(db: Database, name: str, now: datetime) -> str:
    """The secret of this name, made (32 random bytes, base64url) and stored if there is none.

    Servers starting together may both make one: the first to commit wins, and the other
    reads the winner's, so every replica ends up with the same secret.
    """
    for _ in range(2):
        try:
            async with db.write() as session:
                row = await session.get(ServerSecret, name)
                if row is not None:
                    return row.value
                value = secrets.token_urlsafe(32)
                session.add(ServerSecret(name=name, value=value, created_at=now))
            return value
        except IntegrityError:
            continue  # another server stored one first: read it
    raise RuntimeError(f"the secret {name!r} could be neither stored nor read")
