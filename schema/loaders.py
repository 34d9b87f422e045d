"""Per-request DataLoaders: each batch is one `WHERE key IN (...)` query."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from db import customers, events, kyc, models
from db.engine import Database


class Loaders:
    """The loaders of one request."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.verifications_of = DataLoader[int, list[models.KycVerification]](
            self._load_verifications_of
        )
        self.customer = DataLoader[int, models.Customer | None](self._load_customers)
        self.customer_by_external_id = DataLoader[str, models.Customer | None](
            self._load_customers_by_external_id
        )
        self.verification = DataLoader[int, models.KycVerification | None](self._load_verifications)
        self.event = DataLoader[int, models.CustomerEvent | None](self._load_events)

    async def _load_verifications_of(
        self, customer_ids: Sequence[int]
    ) -> list[list[models.KycVerification]]:
        async with self._db.read() as session:
            found = await kyc.list_verifications(session, customer_ids)
        return [found[id_] for id_ in customer_ids]

    async def _load_customers(self, ids: Sequence[int]) -> list[models.Customer | None]:
        async with self._db.read() as session:
            return await customers.get_customers(session, ids)

    async def _load_customers_by_external_id(
        self, external_ids: Sequence[str]
    ) -> list[models.Customer | None]:
        async with self._db.read() as session:
            return await customers.get_customers_by_external_id(session, external_ids)

    async def _load_verifications(self, ids: Sequence[int]) -> list[models.KycVerification | None]:
        async with self._db.read() as session:
            return await kyc.get_verifications(session, ids)

    async def _load_events(self, ids: Sequence[int]) -> list[models.CustomerEvent | None]:
        async with self._db.read() as session:
            return await events.get_events(session, ids)
