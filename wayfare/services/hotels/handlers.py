"""Use cases of the hotels service: plain async functions taking their adapters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
from wayfare.services.hotels import store
from wayfare.services.hotels.domain import (
    HotelNotFound,
    InvalidStay,
    RoomTypeNotFound,
    Stay,
    checked_stay,
)
from wayfare.services.hotels.inventory import InventoryReport, RoomNights, check_inventory
from wayfare.services.hotels.models import holds

__all__ = [
    "Hotels",
    "NewRoomType",
    "RoomHold",
    "add_hotel",
    "confirm_room",
    "expire_due",
    "hold_room",
    "hotel_details",
    "inventory_report",
    "release_room",
    "room_hold",
    "search_hotels",
]

SOURCE = "hotels"
_EXPIRY_BATCH = 200


@dataclass(frozen=True)
class Hotels:
    """What the use cases need, wired once by the bootstrap."""

    uow: UnitOfWork
    hold_ttl: timedelta
    inventory: Inventory = field(default_factory=RoomNights)


@dataclass(frozen=True)
class RoomHold:
    """A hold with the hotel and room it is for (both None on a release tombstone)."""

    hold: Hold
    hotel: store.Hotel | None = None
    room_type: store.RoomType | None = None

    @property
    def nights(self) -> int | None:
        check_in, check_out = self.hold.details["check_in"], self.hold.details["check_out"]
        return None if check_in is None else int((check_out - check_in).days)


@dataclass(frozen=True)
class NewRoomType:
    name: str
    max_guests: int
    price_cents: int
    rooms: int


def _today() -> date:
    return utcnow().date()


async def search_hotels(
    ctx: Hotels,
    *,
    city: str,
    check_in: date,
    check_out: date,
    guests: int,
    page: int,
    page_size: int,
) -> tuple[Stay, store.SearchPage]:
    stay = checked_stay(check_in, check_out, guests, _today())
    async with ctx.uow.begin() as session:
        found = await store.search(
            session, city=city, stay=stay, offset=(page - 1) * page_size, limit=page_size
        )
    return stay, found


async def hotel_details(ctx: Hotels, hotel_id: str) -> tuple[store.Hotel, list[store.RoomType]]:
    async with ctx.uow.begin() as session:
        hotel = await store.hotel_by_id(session, hotel_id)
        if hotel is None:
            raise HotelNotFound(hotel_id)
        return hotel, await store.room_types_of(session, hotel_id)


async def hold_room(
    ctx: Hotels,
    *,
    booking_id: str,
    room_type_id: str,
    check_in: date,
    check_out: date,
    guests: int,
    rooms: int = 1,
) -> tuple[RoomHold, bool]:
    """Hold the rooms for the stay; True when this call placed the hold."""
    stay = checked_stay(check_in, check_out, guests, _today(), rooms=rooms)
    # Room types never change, so reading one apart keeps the hold's transaction short.
    async with ctx.uow.begin() as session:
        found = await store.room_type(session, room_type_id)
    if found is None:
        raise RoomTypeNotFound(room_type_id)
    hotel, room = found
    if not stay.fits(room.max_guests):
        raise InvalidStay(f"{room.name} sleeps {room.max_guests} guests per room")
    async with ctx.uow.begin() as session:
        outcome = await place_hold(
            session,
            holds,
            ctx.inventory,
            booking_id=booking_id,
            resource_id=room.id,
            quantity=stay.rooms,
            price_cents=stay.price_cents(room.price_cents),
            ttl=ctx.hold_ttl,
            details={"hotel_id": hotel.id, "check_in": check_in, "check_out": check_out},
        )
        if outcome.changed:
            await record(session, _event("hotel.held", outcome.hold))
        if outcome.hold.resource_id == room.id:
            return RoomHold(outcome.hold, hotel, room), outcome.changed
        return await _described(session, outcome.hold), outcome.changed


async def confirm_room(ctx: Hotels, booking_id: str) -> RoomHold:
    async with ctx.uow.begin() as session:
        outcome = await confirm_hold(session, holds, ctx.inventory, booking_id)
        if outcome.changed:
            await record(session, _event("hotel.confirmed", outcome.hold))
        return await _described(session, outcome.hold)


async def release_room(ctx: Hotels, booking_id: str) -> RoomHold:
    async with ctx.uow.begin() as session:
        outcome = await release_hold(session, holds, ctx.inventory, booking_id)
        if outcome.changed:
            await record(session, _event("hotel.released", outcome.hold, reason="released"))
        return await _described(session, outcome.hold)


async def room_hold(ctx: Hotels, booking_id: str) -> RoomHold:
    async with ctx.uow.begin() as session:
        hold = await get_hold(session, holds, booking_id)
        if hold is None:
            raise HoldNotFound(booking_id)
        return await _described(session, hold)


async def expire_due(ctx: Hotels, *, now: datetime | None = None) -> int:
    """Expire every hold past its time, a batch per transaction; returns how many."""
    total = 0
    while True:
        async with ctx.uow.begin() as session:
            expired = await expire_holds(
                session, holds, ctx.inventory, now=now, limit=_EXPIRY_BATCH
            )
            for hold in expired:
                await record(session, _event("hotel.released", hold, reason="expired"))
        total += len(expired)
        if len(expired) < _EXPIRY_BATCH:
            return total


async def inventory_report(ctx: Hotels) -> InventoryReport:
    async with ctx.uow.begin() as session:
        return await check_inventory(session)


async def add_hotel(
    ctx: Hotels,
    *,
    name: str,
    city: str,
    stars: int,
    description: str,
    room_types: Sequence[NewRoomType],
    days: int,
) -> tuple[store.Hotel, list[store.RoomType]]:
    """A hotel with rooms free from today for `days` nights."""
    hotel = store.Hotel(
        id=str(uuid.uuid4()), name=name, city=city, stars=stars, description=description
    )
    rooms = [
        store.RoomType(
            id=str(uuid.uuid4()),
            hotel_id=hotel.id,
            name=r.name,
            max_guests=r.max_guests,
            price_cents=r.price_cents,
            rooms=r.rooms,
        )
        for r in room_types
    ]
    async with ctx.uow.begin() as session:
        await store.add_hotels(session, [hotel], rooms, first_night=_today(), days=days)
    return hotel, rooms


async def _described(session: AsyncSession, hold: Hold) -> RoomHold:
    found = None if hold.resource_id is None else await store.room_type(session, hold.resource_id)
    return RoomHold(hold) if found is None else RoomHold(hold, *found)


def _event(type_: str, hold: Hold, *, reason: str | None = None) -> Event:
    check_in, check_out = hold.details["check_in"], hold.details["check_out"]
    data = {
        "booking_id": hold.booking_id,
        "hotel_id": hold.details["hotel_id"],
        "room_type_id": hold.resource_id,
        "check_in": check_in.isoformat(),
        "check_out": check_out.isoformat(),
        "rooms": hold.quantity,
    }
    if reason is not None:
        data["reason"] = reason
    return Event.new(type=type_, source=SOURCE, subject=hold.booking_id, data=data)
