"""Demo flights: every ordered pair of the demo cities, once or twice a day for a year.

Deterministic (one seeded generator) apart from the first day, which is today (UTC).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from itertools import permutations

from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.services.flights import store

__all__ = ["CITIES", "DAYS", "demo_flights", "load_demo"]

CITIES = ("Lisbon", "Porto", "Paris", "Berlin", "Rome", "Madrid", "Amsterdam")
DAYS = 365


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_flights(rng: random.Random, first_day: date, days: int = DAYS) -> list[store.Flight]:
    flights: list[store.Flight] = []
    for route, (origin, destination) in enumerate(permutations(CITIES, 2)):
        # Each route keeps its numbers, times, length and aircraft every day, as airlines do.
        morning = time(rng.randint(6, 11), rng.choice((0, 15, 30, 45)))
        evening = time(rng.randint(14, 21), rng.choice((0, 15, 30, 45)))
        duration = timedelta(minutes=rng.randint(15, 42) * 5)
        seats = rng.choice((120, 150, 180))
        base = rng.randint(40, 160) * 100
        for day in range(days):
            when = first_day + timedelta(days=day)
            slots = [(0, morning), (1, evening)] if rng.random() < 0.5 else [(0, morning)]
            for slot, at in slots:
                departs = datetime.combine(when, at, tzinfo=UTC)
                flights.append(
                    store.Flight(
                        id=_uuid(rng),
                        number=f"WF{100 + route * 2 + slot}",
                        origin=origin,
                        destination=destination,
                        departs_at=departs,
                        arrives_at=departs + duration,
                        price_cents=base + rng.randint(-10, 30) * 100,
                        seats=seats,
                    )
                )
    return flights


async def load_demo(session: AsyncSession, *, first_day: date) -> int:
    """Load the demo flights once; returns how many were added (0 when flights exist)."""
    if await store.count_flights(session):
        return 0
    flights = demo_flights(random.Random(42), first_day)  # noqa: S311 - demo data, not secrets
    await store.add_flights(session, flights)
    return len(flights)
