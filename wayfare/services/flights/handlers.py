"""Use cases of the flights service: plain async functions taking their adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.bus import Event
from wayfare.kit.db import UnitOfWork, utcnow
from wayfare.kit.holds import (
    Hold,
    HoldNotFound,
    Inventory,
    confirm_hold,
    expire_holds,
    get_hold,
    place_hold,
    release_hold,
)
from wayfare.kit.outbox import record
from wayfare.services.flights import store
from wayfare.services.flights.domain import (
    FlightNotFound,
    InvalidRequest,
    Search,
    checked_search,
)
from wayfare.services.flights.inventory import InventoryReport, Seats, check_inventory
from wayfare.services.flights.models import holds

__all__ = [
    "Flights",
    "SeatHold",
    "add_flight",
    "confirm_seats",
    "expire_due",
    "flight_details",
    "hold_seats",
    "inventory_report",
    "release_seats",
    "search_flights",
    "seat_hold",
]

SOURCE = "flights"
_EXPIRY_BATCH = 200


@dataclass(frozen=True)
class Flights:
    """What the use cases need, wired once by the bootstrap."""

    uow: UnitOfWork
    hold_ttl: timedelta
    inventory: Inventory = field(default_factory=Seats)


@dataclass(frozen=True)
class SeatHold:
    """A hold with the flight it is for (None on a release tombstone)."""

    hold: Hold
    flight: store.Flight | None = None


async def search_flights(
    ctx: Flights,
    *,
    origin: str,
    destination: str,
    day: date,
    seats: int,
    page: int,
    page_size: int,
) -> tuple[Search, store.FlightPage]:
    where = checked_search(origin, destination, day, seats, utcnow().date())
    async with ctx.uow.begin() as session:
        found = await store.search(session, where, offset=(page - 1) * page_size, limit=page_size)
    return where, found


async def flight_details(ctx: Flights, flight_id: str) -> store.Flight:
    async with ctx.uow.begin() as session:
        flight = await store.flight_by_id(session, flight_id)
    if flight is None:
        raise FlightNotFound(flight_id)
    return flight


async def hold_seats(
    ctx: Flights, *, booking_id: str, flight_id: str, seats: int
) -> tuple[SeatHold, bool]:
    """Hold seats on the flight; True when this call placed the hold."""
    # The flight's fixed facts are read apart, to keep the hold's transaction short.
    async with ctx.uow.begin() as session:
        flight = await store.flight_by_id(session, flight_id)
    if flight is None:
        raise FlightNotFound(flight_id)
    if flight.departs_at <= utcnow():
        raise InvalidRequest("the flight has departed")
    async with ctx.uow.begin() as session:
        outcome = await place_hold(
            session,
            holds,
            ctx.inventory,
            booking_id=booking_id,
            resource_id=flight.id,
            quantity=seats,
            price_cents=flight.price_cents * seats,
            ttl=ctx.hold_ttl,
        )
        if outcome.changed:
            await record(session, _event("flight.held", outcome.hold))
        return await _described(session, outcome.hold), outcome.changed


async def confirm_seats(ctx: Flights, booking_id: str) -> SeatHold:
    async with ctx.uow.begin() as session:
        outcome = await confirm_hold(session, holds, ctx.inventory, booking_id)
        if outcome.changed:
            await record(session, _event("flight.confirmed", outcome.hold))
        return await _described(session, outcome.hold)


async def release_seats(ctx: Flights, booking_id: str) -> SeatHold:
    async with ctx.uow.begin() as session:
        outcome = await release_hold(session, holds, ctx.inventory, booking_id)
        if outcome.changed:
            await record(session, _event("flight.released", outcome.hold, reason="released"))
        return await _described(session, outcome.hold)


async def seat_hold(ctx: Flights, booking_id: str) -> SeatHold:
    async with ctx.uow.begin() as session:
        hold = await get_hold(session, holds, booking_id)
        if hold is None:
            raise HoldNotFound(booking_id)
        return await _described(session, hold)


async def expire_due(ctx: Flights, *, now: datetime | None = None) -> int:
    """Expire every hold past its time, a batch per transaction; returns how many."""
    total = 0
    while True:
        async with ctx.uow.begin() as session:
            expired = await expire_holds(
                session, holds, ctx.inventory, now=now, limit=_EXPIRY_BATCH
            )
            for hold in expired:
                await record(session, _event("flight.released", hold, reason="expired"))
        total += len(expired)
        if len(expired) < _EXPIRY_BATCH:
            return total


async def inventory_report(ctx: Flights) -> InventoryReport:
    async with ctx.uow.begin() as session:
        return await check_inventory(session)


async def add_flight(
    ctx: Flights,
    *,
    number: str,
    origin: str,
    destination: str,
    departs_at: datetime,
    arrives_at: datetime,
    price_cents: int,
    seats: int,
) -> store.Flight:
    if origin.casefold() == destination.casefold():
        raise InvalidRequest("origin and destination must differ")
    if arrives_at <= departs_at:
        raise InvalidRequest("the flight must arrive after it departs")
    flight = store.Flight(
        id=str(uuid.uuid4()),
        number=number,
        origin=origin,
        destination=destination,
        departs_at=departs_at,
        arrives_at=arrives_at,
        price_cents=price_cents,
        seats=seats,
    )
    async with ctx.uow.begin() as session:
        await store.add_flights(session, [flight])
    return flight


async def _described(session: AsyncSession, hold: Hold) -> SeatHold:
    if hold.resource_id is None:
        return SeatHold(hold)
    return SeatHold(hold, await store.flight_by_id(session, hold.resource_id))


def _event(type_: str, hold: Hold, *, reason: str | None = None) -> Event:
    data: dict[str, object] = {
        "booking_id": hold.booking_id,
        "flight_id": hold.resource_id,
        "seats": hold.quantity,
    }
    if reason is not None:
        data["reason"] = reason
    return Event.new(type=type_, source=SOURCE, subject=hold.booking_id, data=data)
