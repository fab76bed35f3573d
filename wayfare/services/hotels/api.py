"""HTTP routes of the hotels service: public search, and the internal hold endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from wayfare.kit.auth.service import service_caller
from wayfare.kit.cache import ReadCaches, read_caches, read_through
from wayfare.kit.holds import HoldError, hold_problem
from wayfare.kit.problems import Problem
from wayfare.kit.validation import Name, SafeStr
from wayfare.services.hotels import handlers
from wayfare.services.hotels.domain import (
    MAX_ROOMS,
    HotelNotFound,
    InvalidStay,
    RoomTypeNotFound,
)
from wayfare.services.hotels.store import Hotel, HotelOffers, Offer, RoomType

__all__ = ["internal_router", "router"]

MAX_PAGE_SIZE = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


BookingId = Annotated[SafeStr, Field(min_length=1, max_length=64)]


class HoldIn(_Strict):
    booking_id: BookingId
    room_type_id: Annotated[str, Field(min_length=1, max_length=36)]
    check_in: date
    check_out: date
    guests: Annotated[int, Field(ge=1, le=100)]
    rooms: Annotated[int, Field(ge=1, le=MAX_ROOMS)] = 1


class RoomTypeIn(_Strict):
    name: Name
    max_guests: Annotated[int, Field(ge=1, le=20)]
    price_cents: Annotated[int, Field(ge=1, le=10_000_000)]
    rooms: Annotated[int, Field(ge=1, le=10_000)]


class HotelIn(_Strict):
    name: Name
    city: Name
    stars: Annotated[int, Field(ge=1, le=5)]
    description: Annotated[SafeStr, Field(max_length=1000)] = ""
    room_types: Annotated[list[RoomTypeIn], Field(min_length=1, max_length=20)]
    days: Annotated[int, Field(ge=1, le=730)] = 30


class RoomTypeOut(BaseModel):
    id: str
    name: str
    max_guests: int
    price_cents: int  # per room and night
    rooms: int

    @classmethod
    def of(cls, room: RoomType) -> RoomTypeOut:
        return cls(
            id=room.id,
            name=room.name,
            max_guests=room.max_guests,
            price_cents=room.price_cents,
            rooms=room.rooms,
        )


class HotelOut(BaseModel):
    id: str
    name: str
    city: str
    stars: int
    description: str
    room_types: list[RoomTypeOut]

    @classmethod
    def of(cls, hotel: Hotel, rooms: list[RoomType]) -> HotelOut:
        return cls(
            id=hotel.id,
            name=hotel.name,
            city=hotel.city,
            stars=hotel.stars,
            description=hotel.description,
            room_types=[RoomTypeOut.of(room) for room in rooms],
        )


class RoomOfferOut(BaseModel):
    id: str
    name: str
    max_guests: int
    nightly_price_cents: int
    price_cents: int  # one room, the whole stay
    nights: int
    available: int  # rooms free on every night of the stay

    @classmethod
    def of(cls, offer: Offer, nights: int) -> RoomOfferOut:
        room = offer.room_type
        return cls(
            id=room.id,
            name=room.name,
            max_guests=room.max_guests,
            nightly_price_cents=room.price_cents,
            price_cents=room.price_cents * nights,
            nights=nights,
            available=offer.free,
        )


class HotelOffersOut(BaseModel):
    id: str
    name: str
    city: str
    stars: int
    description: str
    room_types: list[RoomOfferOut]

    @classmethod
    def of(cls, item: HotelOffers, nights: int) -> HotelOffersOut:
        hotel = item.hotel
        return cls(
            id=hotel.id,
            name=hotel.name,
            city=hotel.city,
            stars=hotel.stars,
            description=hotel.description,
            room_types=[RoomOfferOut.of(offer, nights) for offer in item.offers],
        )


class SearchOut(BaseModel):
    items: list[HotelOffersOut]
    page: int
    page_size: int
    total: int
    check_in: date
    check_out: date
    nights: int
    guests: int


class HoldOut(BaseModel):
    booking_id: str
    status: str
    expires_at: datetime
    price_cents: int
    nights: int | None
    rooms: int
    hotel_id: str | None
    hotel_name: str | None
    city: str | None
    room_type_id: str | None
    room_type_name: str | None
    check_in: date | None
    check_out: date | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: handlers.RoomHold) -> HoldOut:
        hold = view.hold
        return cls(
            booking_id=hold.booking_id,
            status=hold.status,
            expires_at=hold.expires_at,
            price_cents=hold.price_cents,
            nights=view.nights,
            rooms=hold.quantity,
            hotel_id=hold.details["hotel_id"],
            hotel_name=view.hotel.name if view.hotel else None,
            city=view.hotel.city if view.hotel else None,
            room_type_id=hold.resource_id,
            room_type_name=view.room_type.name if view.room_type else None,
            check_in=hold.details["check_in"],
            check_out=hold.details["check_out"],
            created_at=hold.created_at,
            updated_at=hold.updated_at,
        )


def hotels_context(request: Request) -> handlers.Hotels:
    ctx: handlers.Hotels = request.app.state.hotels
    return ctx


HotelsDep = Annotated[handlers.Hotels, Depends(hotels_context)]
CachesDep = Annotated[ReadCaches, Depends(read_caches)]
BookingPath = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(tags=["hotels"])
# Never routed by the gateway, and closed to anyone without the service credential.
internal_router = APIRouter(
    prefix="/internal", tags=["internal"], dependencies=[Depends(service_caller)]
)


@router.get("/hotels", response_model=SearchOut)
async def search(
    ctx: HotelsDep,
    caches: CachesDep,
    city: Annotated[Name, Query()],
    check_in: date,
    check_out: date,
    guests: Annotated[int, Query(ge=1, le=100)] = 1,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1)] = 20,
) -> SearchOut:
    page_size = min(page_size, MAX_PAGE_SIZE)

    async def load() -> SearchOut:
        try:
            stay, found = await handlers.search_hotels(
                ctx,
                city=city,
                check_in=check_in,
                check_out=check_out,
                guests=guests,
                page=page,
                page_size=page_size,
            )
        except InvalidStay as exc:
            raise Problem(422, str(exc)) from exc
        return SearchOut(
            items=[HotelOffersOut.of(item, stay.nights) for item in found.items],
            page=page,
            page_size=page_size,
            total=found.total,
            check_in=stay.check_in,
            check_out=stay.check_out,
            nights=stay.nights,
            guests=stay.guests,
        )

    key = f"{city.lower()}|{check_in}|{check_out}|{guests}|{page}|{page_size}"
    return await read_through(caches.searches, key, load, SearchOut)


@router.get("/hotels/{hotel_id}", response_model=HotelOut)
async def hotel(
    hotel_id: Annotated[str, Path(max_length=36)], ctx: HotelsDep, caches: CachesDep
) -> HotelOut:
    async def load() -> HotelOut:
        try:
            found, rooms = await handlers.hotel_details(ctx, hotel_id)
        except HotelNotFound as exc:
            raise Problem(404, "no such hotel") from exc
        return HotelOut.of(found, rooms)

    return await read_through(caches.details, hotel_id, load, HotelOut)


@internal_router.post("/holds", status_code=201, response_model=HoldOut)
async def hold(body: HoldIn, ctx: HotelsDep, response: Response) -> HoldOut:
    try:
        view, placed = await handlers.hold_room(
            ctx,
            booking_id=body.booking_id,
            room_type_id=body.room_type_id,
            check_in=body.check_in,
            check_out=body.check_out,
            guests=body.guests,
            rooms=body.rooms,
        )
    except InvalidStay as exc:
        raise Problem(422, str(exc)) from exc
    except RoomTypeNotFound as exc:
        raise Problem(404, "no such room type") from exc
    except HoldError as exc:
        raise hold_problem(exc) from exc
    if not placed:
        response.status_code = 200
    return HoldOut.of(view)


@internal_router.post("/holds/{booking_id}/confirm", response_model=HoldOut)
async def confirm(booking_id: BookingPath, ctx: HotelsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.confirm_room(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.post("/holds/{booking_id}/release", response_model=HoldOut)
async def release(booking_id: BookingPath, ctx: HotelsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.release_room(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.get("/holds/{booking_id}", response_model=HoldOut)
async def get_hold(booking_id: BookingPath, ctx: HotelsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.room_hold(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.get("/inventory/check")
async def check(ctx: HotelsDep) -> dict[str, Any]:
    report = await handlers.inventory_report(ctx)
    return {
        "ok": report.ok,
        "room_nights": report.room_nights,
        "violation_count": report.violation_count,
        "violations": report.violations,
    }


@internal_router.post("/hotels", status_code=201, response_model=HotelOut)
async def add_hotel(body: HotelIn, ctx: HotelsDep) -> HotelOut:
    created, rooms = await handlers.add_hotel(
        ctx,
        name=body.name,
        city=body.city,
        stars=body.stars,
        description=body.description,
        room_types=[
            handlers.NewRoomType(
                name=r.name, max_guests=r.max_guests, price_cents=r.price_cents, rooms=r.rooms
            )
            for r in body.room_types
        ],
        days=body.days,
    )
    return HotelOut.of(created, rooms)
