"""HTTP routes of the bookings service: parse, call a use case, map refusals to statuses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wayfare.kit.auth import CurrentUser
from wayfare.kit.problems import Problem
from wayfare.kit.validation import SafeStr
from wayfare.services.bookings import handlers
from wayfare.services.bookings.domain import (
    PENDING,
    BookingNotFound,
    IdempotencyMismatch,
    NotCancellable,
    TooManyPending,
)
from wayfare.services.bookings.store import Booking

__all__ = ["router"]

MAX_NIGHTS = 30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200)


class HotelStay(_Strict):
    hotel_id: SafeStr
    room_type_id: SafeStr
    check_in: date
    check_out: date
    guests: int = Field(ge=1, le=10)

    @model_validator(mode="after")
    def _a_real_stay(self) -> HotelStay:
        nights = (self.check_out - self.check_in).days
        if nights < 1:
            raise ValueError("check_out must be after check_in")
        if nights > MAX_NIGHTS:
            raise ValueError(f"a stay is at most {MAX_NIGHTS} nights")
        if self.check_in < date.today():
            raise ValueError("check_in is in the past")
        return self


class FlightSeats(_Strict):
    flight_id: SafeStr
    seats: int = Field(ge=1, le=9)


class BookingRequest(_Strict):
    hotel: HotelStay
    flight: FlightSeats


class TimelineEntry(BaseModel):
    saga: str
    step: str
    phase: str
    attempt: int
    outcome: str
    error: str | None
    started_at: datetime
    finished_at: datetime


class BookingOut(BaseModel):
    id: str
    status: str
    failure_reason: str | None
    destination: str | None
    hotel_name: str | None
    flight_number: str | None
    price_cents: int | None
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntry] | None = None

    @classmethod
    def of(cls, booking: Booking, timeline: list[dict[str, Any]] | None = None) -> BookingOut:
        return cls(
            id=booking.id,
            status=booking.status,
            failure_reason=booking.failure_reason,
            destination=booking.destination,
            hotel_name=booking.hotel_name,
            flight_number=booking.flight_number,
            price_cents=booking.price_cents,
            request=booking.request,
            created_at=booking.created_at,
            updated_at=booking.updated_at,
            timeline=None if timeline is None else [TimelineEntry(**t) for t in timeline],
        )


class BookingPage(BaseModel):
    items: list[BookingOut]
    page: int
    page_size: int
    total: int


def trips(request: Request) -> handlers.Trips:
    ctx: handlers.Trips = request.app.state.trips
    return ctx


TripsDep = Annotated[handlers.Trips, Depends(trips)]
IdempotencyKey = Annotated[str, Header(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")]

router = APIRouter()


@router.post("/bookings", response_model=BookingOut, status_code=201, tags=["bookings"])
async def book(
    body: BookingRequest,
    user: CurrentUser,
    ctx: TripsDep,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> BookingOut:
    try:
        booking, made = await handlers.book(
            ctx, user_id=user.user_id, key=idempotency_key, request=body.model_dump(mode="json")
        )
    except IdempotencyMismatch as exc:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request",
            type_="https://wayfare.dev/problems/idempotency-key-reused",
        ) from exc
    except TooManyPending as exc:
        raise Problem(
            429,
            f"at most {ctx.max_pending} bookings may be pending at once; wait for them",
            headers={"Retry-After": "5"},
        ) from exc
    response.headers["Location"] = f"/bookings/{booking.id}"
    if booking.status == PENDING:
        response.status_code = 202
    elif not made:
        response.status_code = 200
    return BookingOut.of(booking, await handlers.timeline(ctx, booking.id))


@router.get("/bookings", response_model=BookingPage, tags=["bookings"])
async def list_bookings(
    user: CurrentUser,
    ctx: TripsDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=50)] = 20,
) -> BookingPage:
    items, total = await handlers.list_bookings(
        ctx, user_id=user.user_id, page=page, page_size=page_size
    )
    return BookingPage(
        items=[BookingOut.of(b) for b in items], page=page, page_size=page_size, total=total
    )


@router.get("/bookings/{booking_id}", response_model=BookingOut, tags=["bookings"])
async def get_booking(booking_id: str, user: CurrentUser, ctx: TripsDep) -> BookingOut:
    try:
        booking = await handlers.view(
            ctx, booking_id=booking_id, user_id=user.user_id, is_admin=user.is_admin
        )
    except BookingNotFound as exc:
        raise Problem(404, "no such booking") from exc
    return BookingOut.of(booking, await handlers.timeline(ctx, booking.id))


@router.post("/bookings/{booking_id}/cancel", response_model=BookingOut, tags=["bookings"])
async def cancel(
    booking_id: str, user: CurrentUser, ctx: TripsDep, response: Response
) -> BookingOut:
    try:
        booking = await handlers.cancel(
            ctx, booking_id=booking_id, user_id=user.user_id, is_admin=user.is_admin
        )
    except BookingNotFound as exc:
        raise Problem(404, "no such booking") from exc
    except NotCancellable as exc:
        raise Problem(409, f"a {exc} booking cannot be cancelled") from exc
    if booking.status != "CANCELLED":
        response.status_code = 202
    return BookingOut.of(booking, await handlers.timeline(ctx, booking.id))
