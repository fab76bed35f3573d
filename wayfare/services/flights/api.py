"""HTTP routes of the flights service: public search, and the internal hold endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wayfare.kit.auth.service import service_caller
from wayfare.kit.cache import ReadCaches, read_caches, read_through
from wayfare.kit.holds import HoldError, hold_problem
from wayfare.kit.problems import Problem
from wayfare.kit.validation import Name, SafeStr
from wayfare.services.flights import handlers
from wayfare.services.flights.domain import MAX_SEATS, FlightNotFound, InvalidRequest
from wayfare.services.flights.store import Flight

__all__ = ["internal_router", "router"]

MAX_PAGE_SIZE = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class HoldIn(_Strict):
    booking_id: Annotated[SafeStr, Field(min_length=1, max_length=64)]
    flight_id: Annotated[str, Field(min_length=1, max_length=36)]
    seats: Annotated[int, Field(ge=1, le=MAX_SEATS)] = 1


class FlightIn(_Strict):
    number: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")]
    origin: Name
    destination: Name
    departs_at: AwareDatetime
    arrives_at: AwareDatetime
    price_cents: Annotated[int, Field(ge=1, le=10_000_000)]
    seats: Annotated[int, Field(ge=1, le=1_000)]


class FlightOut(BaseModel):
    id: str
    number: str
    origin: str
    destination: str
    departs_at: datetime
    arrives_at: datetime
    price_cents: int  # per seat
    seats: int
    available: int

    @classmethod
    def of(cls, flight: Flight) -> FlightOut:
        return cls(
            id=flight.id,
            number=flight.number,
            origin=flight.origin,
            destination=flight.destination,
            departs_at=flight.departs_at,
            arrives_at=flight.arrives_at,
            price_cents=flight.price_cents,
            seats=flight.seats,
            available=flight.free,
        )


class FlightOfferOut(BaseModel):
    id: str
    number: str
    origin: str
    destination: str
    departs_at: datetime
    arrives_at: datetime
    seat_price_cents: int
    price_cents: int  # all the seats asked for
    seats: int  # asked for
    available: int


class SearchOut(BaseModel):
    items: list[FlightOfferOut]
    page: int
    page_size: int
    total: int
    date: date
    seats: int


class HoldOut(BaseModel):
    booking_id: str
    status: str
    expires_at: datetime
    price_cents: int
    seats: int
    flight_id: str | None
    number: str | None
    origin: str | None
    destination: str | None
    departs_at: datetime | None
    arrives_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: handlers.SeatHold) -> HoldOut:
        hold, flight = view.hold, view.flight
        return cls(
            booking_id=hold.booking_id,
            status=hold.status,
            expires_at=hold.expires_at,
            price_cents=hold.price_cents,
            seats=hold.quantity,
            flight_id=hold.resource_id,
            number=flight.number if flight else None,
            origin=flight.origin if flight else None,
            destination=flight.destination if flight else None,
            departs_at=flight.departs_at if flight else None,
            arrives_at=flight.arrives_at if flight else None,
            created_at=hold.created_at,
            updated_at=hold.updated_at,
        )


def flights_context(request: Request) -> handlers.Flights:
    ctx: handlers.Flights = request.app.state.flights
    return ctx


FlightsDep = Annotated[handlers.Flights, Depends(flights_context)]
CachesDep = Annotated[ReadCaches, Depends(read_caches)]
BookingPath = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(tags=["flights"])
# Never routed by the gateway, and closed to anyone without the service credential.
internal_router = APIRouter(
    prefix="/internal", tags=["internal"], dependencies=[Depends(service_caller)]
)


@router.get("/flights", response_model=SearchOut)
async def search(
    ctx: FlightsDep,
    caches: CachesDep,
    origin: Annotated[Name, Query()],
    destination: Annotated[Name, Query()],
    day: Annotated[date, Query(alias="date")],
    seats: Annotated[int, Query(ge=1, le=MAX_SEATS)] = 1,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1)] = 20,
) -> SearchOut:
    page_size = min(page_size, MAX_PAGE_SIZE)

    async def load() -> SearchOut:
        try:
            where, found = await handlers.search_flights(
                ctx,
                origin=origin,
                destination=destination,
                day=day,
                seats=seats,
                page=page,
                page_size=page_size,
            )
        except InvalidRequest as exc:
            raise Problem(422, str(exc)) from exc
        return SearchOut(
            items=[_offer_out(flight, where.seats) for flight in found.items],
            page=page,
            page_size=page_size,
            total=found.total,
            date=where.day,
            seats=where.seats,
        )

    key = f"{origin.lower()}|{destination.lower()}|{day}|{seats}|{page}|{page_size}"
    return await read_through(caches.searches, key, load, SearchOut)


@router.get("/flights/{flight_id}", response_model=FlightOut)
async def flight(
    flight_id: Annotated[str, Path(max_length=36)], ctx: FlightsDep, caches: CachesDep
) -> FlightOut:
    async def load() -> FlightOut:
        try:
            return FlightOut.of(await handlers.flight_details(ctx, flight_id))
        except FlightNotFound as exc:
            raise Problem(404, "no such flight") from exc

    return await read_through(caches.details, flight_id, load, FlightOut)


@internal_router.post("/holds", status_code=201, response_model=HoldOut)
async def hold(body: HoldIn, ctx: FlightsDep, response: Response) -> HoldOut:
    try:
        view, placed = await handlers.hold_seats(
            ctx, booking_id=body.booking_id, flight_id=body.flight_id, seats=body.seats
        )
    except InvalidRequest as exc:
        raise Problem(422, str(exc)) from exc
    except FlightNotFound as exc:
        raise Problem(404, "no such flight") from exc
    except HoldError as exc:
        raise hold_problem(exc) from exc
    if not placed:
        response.status_code = 200
    return HoldOut.of(view)


@internal_router.post("/holds/{booking_id}/confirm", response_model=HoldOut)
async def confirm(booking_id: BookingPath, ctx: FlightsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.confirm_seats(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.post("/holds/{booking_id}/release", response_model=HoldOut)
async def release(booking_id: BookingPath, ctx: FlightsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.release_seats(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.get("/holds/{booking_id}", response_model=HoldOut)
async def get_hold(booking_id: BookingPath, ctx: FlightsDep) -> HoldOut:
    try:
        return HoldOut.of(await handlers.seat_hold(ctx, booking_id))
    except HoldError as exc:
        raise hold_problem(exc) from exc


@internal_router.get("/inventory/check")
async def check(ctx: FlightsDep) -> dict[str, Any]:
    report = await handlers.inventory_report(ctx)
    return {
        "ok": report.ok,
        "flights": report.flights,
        "violation_count": report.violation_count,
        "violations": report.violations,
    }


@internal_router.post("/flights", status_code=201, response_model=FlightOut)
async def add_flight(body: FlightIn, ctx: FlightsDep) -> FlightOut:
    try:
        created = await handlers.add_flight(
            ctx,
            number=body.number,
            origin=body.origin,
            destination=body.destination,
            departs_at=body.departs_at,
            arrives_at=body.arrives_at,
            price_cents=body.price_cents,
            seats=body.seats,
        )
    except InvalidRequest as exc:
        raise Problem(422, str(exc)) from exc
    return FlightOut.of(created)


def _offer_out(flight: Flight, seats: int) -> FlightOfferOut:
    return FlightOfferOut(
        id=flight.id,
        number=flight.number,
        origin=flight.origin,
        destination=flight.destination,
        departs_at=flight.departs_at,
        arrives_at=flight.arrives_at,
        seat_price_cents=flight.price_cents,
        price_cents=flight.price_cents * seats,
        seats=seats,
        available=flight.free,
    )
