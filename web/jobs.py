"""The server's background jobs: the KYC expiry sweep and the pruning of old events (also run
once by `customer-api expire-kyc`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from db import events, kyc
from db.engine import Database
from db.models import utc_now
from schema.context import Clock
from schema.errors import report
from web import metrics
from web.settings import Settings

logger = logging.getLogger("customer_api")


async def expire_kyc(db: Database, settings: Settings, clock: Clock = utc_now) -> int:
    """One expiry sweep; returns how many verifications it expired."""
    async with db.write() as session:
        return await kyc.expire_stale(session, clock(), settings.kyc_ttl)


async def prune_events(db: Database, settings: Settings, clock: Clock = utc_now) -> int:
    """Delete the events older than the retention; returns how many."""
    async with db.write() as session:
        return await events.prune(session, clock() - timedelta(days=settings.event_retention_days))


async def sweep_forever(db: Database, settings: Settings, clock: Clock) -> None:
    """Write expiries down and prune old events on an interval. Reads apply the expiry rule
    meanwhile, so the interval only bounds how stale the stored rows (and filters) may be."""
    while True:
        try:
            expired = await expire_kyc(db, settings, clock)
            if expired:
                logger.info("expired %d KYC verifications", expired)
            pruned = await prune_events(db, settings, clock)
            if pruned:
                logger.info("pruned %d events past retention", pruned)
            metrics.count_sweep(expired)  # one run, counted once: ok only when both steps were
        except Exception as error:
            # A failed sweep (the database restarting, say) is retried on the next tick.
            metrics.count_sweep(None)
            report(error, "the expiry sweep and event pruning")
        await asyncio.sleep(settings.kyc_sweep_interval_seconds)
