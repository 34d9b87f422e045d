"""Reads and writes of KYC verifications."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from db.models import KycVerification


async def list_verifications(
    session: AsyncSession, customer_ids: Sequence[int]
) -> dict[int, list[KycVerification]]:
    """Every verification of these customers, oldest first, by customer id: one query."""
    rows = await session.scalars(
        select(KycVerification)
        .where(col(KycVerification.customer_id).in_(customer_ids))
        .order_by(col(KycVerification.customer_id), col(KycVerification.id))
    )
    found: dict[int, list[KycVerification]] = {id_: [] for id_ in customer_ids}
    for row in rows:
        found[row.customer_id].append(row)
    return found


async def get_verifications(
    session: AsyncSession, ids: Sequence[int]
) -> list[KycVerification | None]:
    """The verifications with these primary keys, in the keys' order, None where there is none."""
    rows = await session.scalars(select(KycVerification).where(col(KycVerification.id).in_(ids)))
    by_id = {row.id: row for row in rows}
    return [by_id.get(id_) for id_ in ids]
