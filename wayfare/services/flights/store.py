"""Reads and writes of flights, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.services.flights.domain import Search
from wayfare.services.flights.models import flights

__all__ = ["Flight", "FlightPage", "add_flights", "count_flights", "flight_by_id", "search"]


@dataclass(frozen=True)
class Flight:
    id: str
    number: str
    origin: str
    destination: str
    departs_at: datetime
    arrives_at: datetime
    price_cents: int  # per seat
    seats: int
    held: int = 0
    confirmed: int = 0

    @property
    def free(self) -> int:
        return self.seats - self.held - self.confirmed

    @classmethod
    def from_row(cls, row: RowMapping) -> Flight:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class FlightPage:
    items: list[Flight]
    total: int


async def flight_by_id(session: AsyncSession, flight_id: str) -> Flight | None:
    query = select(flights).where(flights.c.id == flight_id)
    row = (await session.execute(query)).mappings().first()
    return None if row is None else Flight.from_row(row)


async def count_flights(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(flights))).scalar_one())


async def search(session: AsyncSession, where: Search, *, offset: int, limit: int) -> FlightPage:
    """The day's flights on the route (UTC day) with the seats free, by departure."""
    start = datetime.combine(where.day, time(), tzinfo=UTC)
    matching = select(flights).where(
        flights.c.departs_at >= start,
        flights.c.departs_at < start + timedelta(days=1),
        func.lower(flights.c.origin) == where.origin.lower(),
        func.lower(flights.c.destination) == where.destination.lower(),
        flights.c.seats - flights.c.held - flights.c.confirmed >= where.seats,
    )
    total = (
        await session.execute(select(func.count()).select_from(matching.subquery()))
    ).scalar_one()
    page = matching.order_by(flights.c.departs_at, flights.c.number).offset(offset).limit(limit)
    rows = (await session.execute(page)).mappings()
    return FlightPage(items=[Flight.from_row(row) for row in rows], total=int(total))


async def add_flights(session: AsyncSession, new_flights: Sequence[Flight]) -> None:
    # One executemany: the seed loads ~20 000 rows and must stay fast on SQLite
    # (`vars`, not `asdict`, whose deep copies cost more than the insert).
    await session.execute(flights.insert(), [vars(f) for f in new_flights])
