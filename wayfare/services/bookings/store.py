"""Reads and writes of bookings, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.bus import Event
from wayfare.kit.db import utcnow
from wayfare.kit.outbox import record
from wayfare.services.bookings.domain import PENDING
from wayfare.services.bookings.models import bookings

__all__ = [
    "Booking",
    "add",
    "by_id",
    "by_key",
    "count_pending",
    "list_for_user",
    "note_failure",
    "settle",
]


@dataclass(frozen=True)
class Booking:
    id: str
    user_id: str
    status: str
    idempotency_key: str
    request_hash: str
    request: dict[str, Any]
    destination: str | None
    hotel_name: str | None
    flight_number: str | None
    price_cents: int | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Booking:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def event(self, type_: str) -> Event:
        hotel = self.request.get("hotel", {})
        return Event.new(
            type=type_,
            source="bookings",
            subject=self.id,
            data={
                "booking_id": self.id,
                "user_id": self.user_id,
                "status": self.status,
                "destination": self.destination,
                "hotel_name": self.hotel_name,
                "check_in": hotel.get("check_in"),
                "check_out": hotel.get("check_out"),
                "flight_number": self.flight_number,
                "reason": self.failure_reason,
            },
        )


async def add(session: AsyncSession, booking: Booking) -> None:
    await session.execute(bookings.insert().values(**booking.__dict__))


async def by_id(session: AsyncSession, booking_id: str) -> Booking | None:
    row = (
        (await session.execute(select(bookings).where(bookings.c.id == booking_id)))
        .mappings()
        .first()
    )
    return None if row is None else Booking.from_row(row)


async def by_key(session: AsyncSession, user_id: str, key: str) -> Booking | None:
    row = (
        (
            await session.execute(
                select(bookings).where(
                    bookings.c.user_id == user_id, bookings.c.idempotency_key == key
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else Booking.from_row(row)


async def count_pending(session: AsyncSession, user_id: str) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(bookings)
        .where(bookings.c.user_id == user_id, bookings.c.status == PENDING)
    )
    return int(result.scalar_one())


async def list_for_user(
    session: AsyncSession, user_id: str, *, offset: int, limit: int
) -> tuple[list[Booking], int]:
    rows = (
        await session.execute(
            select(bookings)
            .where(bookings.c.user_id == user_id)
            .order_by(bookings.c.created_at.desc(), bookings.c.id)
            .offset(offset)
            .limit(limit)
        )
    ).mappings()
    total = await session.execute(
        select(func.count()).select_from(bookings).where(bookings.c.user_id == user_id)
    )
    return [Booking.from_row(row) for row in rows], int(total.scalar_one())


async def settle(
    session: AsyncSession,
    booking_id: str,
    status: str,
    details: dict[str, Any],
    *,
    reason: str | None = None,
) -> None:
    """Give the booking its final status and announce it, in the saga's last transaction."""
    values = {k: v for k, v in details.items() if v is not None}
    await session.execute(
        update(bookings)
        .where(bookings.c.id == booking_id)
        .values(status=status, failure_reason=reason, updated_at=utcnow(), **values)
    )
    booking = await by_id(session, booking_id)
    if booking is not None:
        await record(session, booking.event(f"booking.{status.lower()}"))


async def note_failure(session: AsyncSession, booking_id: str, reason: str | None) -> None:
    await session.execute(
        update(bookings)
        .where(bookings.c.id == booking_id)
        .values(failure_reason=f"cancellation stuck: {reason}", updated_at=utcnow())
    )
