"""Demo hotels: three per city, two or three room types each, a year of nights ahead.

Deterministic (one seeded generator) apart from the first night, which is today (UTC).
"""

from __future__ import annotations

import random
import uuid
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.services.hotels import store

__all__ = ["CITIES", "DAYS", "demo_hotels", "load_demo"]

CITIES = ("Lisbon", "Porto", "Paris", "Berlin", "Rome", "Madrid", "Amsterdam")
DAYS = 365
_PREFIXES = ("Grand", "Old Town", "Riverside", "Central", "Garden", "Harbour", "Royal", "Park")
_KINDS = ("Hotel", "Inn", "Suites", "Residence")
# name, guests per room, price factor
_ROOMS = (("Single", 1, 0.7), ("Double", 2, 1.0), ("Twin", 2, 1.0), ("Family Suite", 4, 1.8))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_hotels(rng: random.Random) -> tuple[list[store.Hotel], list[store.RoomType]]:
    hotels: list[store.Hotel] = []
    rooms: list[store.RoomType] = []
    for city in CITIES:
        for prefix in rng.sample(_PREFIXES, 3):
            stars = rng.randint(2, 5)
            hotel = store.Hotel(
                id=_uuid(rng),
                name=f"{prefix} {rng.choice(_KINDS)} {city}",
                city=city,
                stars=stars,
                description=f"A {stars}-star hotel in {city}.",
            )
            hotels.append(hotel)
            base = 3_000 + stars * 2_500 + rng.randint(0, 40) * 100
            for name, guests, factor in rng.sample(_ROOMS, rng.randint(2, 3)):
                rooms.append(
                    store.RoomType(
                        id=_uuid(rng),
                        hotel_id=hotel.id,
                        name=name,
                        max_guests=guests,
                        price_cents=round(base * factor / 100) * 100,
                        rooms=rng.randint(5, 20),
                    )
                )
    return hotels, rooms


async def load_demo(session: AsyncSession, *, first_night: date) -> int:
    """Load the demo hotels once; returns how many were added (0 when hotels exist)."""
    if await store.count_hotels(session):
        return 0
    hotels, rooms = demo_hotels(random.Random(42))  # noqa: S311 - demo data, not secrets
    await store.add_hotels(session, hotels, rooms, first_night=first_night, days=DAYS)
    return len(hotels)
