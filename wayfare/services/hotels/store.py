"""Reads and writes of hotels and room types, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.services.hotels.domain import Stay
from wayfare.services.hotels.models import hotels, room_nights, room_types

__all__ = [
    "Hotel",
    "HotelOffers",
    "Offer",
    "RoomType",
    "SearchPage",
    "add_hotels",
    "count_hotels",
    "hotel_by_id",
    "room_type",
    "room_types_of",
    "search",
]


@dataclass(frozen=True)
class Hotel:
    id: str
    name: str
    city: str
    stars: int
    description: str


@dataclass(frozen=True)
class RoomType:
    id: str
    hotel_id: str
    name: str
    max_guests: int
    price_cents: int  # per room and night
    rooms: int


@dataclass(frozen=True)
class Offer:
    room_type: RoomType
    free: int  # rooms free on every night of the stay


@dataclass(frozen=True)
class HotelOffers:
    hotel: Hotel
    offers: list[Offer]


@dataclass(frozen=True)
class SearchPage:
    items: list[HotelOffers]
    total: int


def _of(cls: type[Any], row: RowMapping) -> Any:
    return cls(**{f.name: row[f.name] for f in fields(cls)})


async def hotel_by_id(session: AsyncSession, hotel_id: str) -> Hotel | None:
    row = (await session.execute(select(hotels).where(hotels.c.id == hotel_id))).mappings().first()
    return None if row is None else _of(Hotel, row)


async def room_type(session: AsyncSession, room_type_id: str) -> tuple[Hotel, RoomType] | None:
    """The room type with its hotel."""
    query = select(room_types).where(room_types.c.id == room_type_id)
    row = (await session.execute(query)).mappings().first()
    if row is None:
        return None
    room: RoomType = _of(RoomType, row)
    hotel = await hotel_by_id(session, room.hotel_id)
    return None if hotel is None else (hotel, room)


async def room_types_of(session: AsyncSession, hotel_id: str) -> list[RoomType]:
    query = (
        select(room_types)
        .where(room_types.c.hotel_id == hotel_id)
        .order_by(room_types.c.price_cents, room_types.c.name)
    )
    return [_of(RoomType, row) for row in (await session.execute(query)).mappings()]


async def count_hotels(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(hotels))).scalar_one())


async def search(
    session: AsyncSession, *, city: str, stay: Stay, offset: int, limit: int
) -> SearchPage:
    """Hotels of the city, by name, with the room types free on every night of the stay."""
    free = room_nights.c.capacity - room_nights.c.held - room_nights.c.confirmed
    available = (
        select(room_types.c.id.label("room_type_id"), func.min(free).label("free"))
        .join(hotels, hotels.c.id == room_types.c.hotel_id)
        .join(room_nights, room_nights.c.room_type_id == room_types.c.id)
        .where(
            func.lower(hotels.c.city) == city.lower(),
            room_types.c.max_guests * stay.rooms >= stay.guests,
            room_nights.c.night >= stay.check_in,
            room_nights.c.night < stay.check_out,
        )
        .group_by(room_types.c.id)
        # Every night must exist (inventory is loaded a year ahead) and have room.
        .having(func.count() == stay.nights, func.min(free) >= stay.rooms)
        .subquery()
    )
    offered = (
        select(room_types, available.c.free)
        .join(available, available.c.room_type_id == room_types.c.id)
        .order_by(room_types.c.price_cents, room_types.c.name)
    )
    rows = (await session.execute(offered)).mappings().all()
    # A city holds a few dozen room types at most, so paging happens here.
    offers: dict[str, list[Offer]] = {}
    for row in rows:
        offers.setdefault(row["hotel_id"], []).append(Offer(_of(RoomType, row), row["free"]))
    found = (
        (await session.execute(select(hotels).where(hotels.c.id.in_(list(offers)))))
        .mappings()
        .all()
    )
    ordered = sorted((_of(Hotel, row) for row in found), key=lambda h: (h.name, h.id))
    return SearchPage(
        items=[HotelOffers(h, offers[h.id]) for h in ordered[offset : offset + limit]],
        total=len(ordered),
    )


async def add_hotels(
    session: AsyncSession,
    new_hotels: Sequence[Hotel],
    new_room_types: Sequence[RoomType],
    *,
    first_night: date,
    days: int,
) -> int:
    """Insert hotels and their rooms, free for `days` nights; returns the room-nights made."""
    await session.execute(hotels.insert(), [vars(h) for h in new_hotels])
    await session.execute(room_types.insert(), [vars(r) for r in new_room_types])
    nights = [first_night + timedelta(days=d) for d in range(days)]
    rows = [
        {"room_type_id": r.id, "night": night, "capacity": r.rooms, "held": 0, "confirmed": 0}
        for r in new_room_types
        for night in nights
    ]
    # One executemany: the seed loads ~20 000 rows and must stay fast on SQLite.
    await session.execute(room_nights.insert(), rows)
    return len(rows)
