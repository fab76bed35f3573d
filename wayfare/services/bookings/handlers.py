"""Use cases of the bookings service: plain async functions taking their adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from wayfare.kit.db import UnitOfWork, utcnow
from wayfare.kit.outbox import record
from wayfare.kit.saga import SagaRunner, saga_timeline
from wayfare.services.bookings import store
from wayfare.services.bookings.domain import (
    CANCELLED,
    CONFIRMED,
    PENDING,
    BookingNotFound,
    IdempotencyMismatch,
    NotCancellable,
    TooManyPending,
    can_see,
    request_hash,
)
from wayfare.services.bookings.trip import BOOK, CANCEL, cancel_saga_id

__all__ = ["Trips", "book", "cancel", "list_bookings", "timeline", "view"]


@dataclass(frozen=True)
class Trips:
    """What the use cases need, wired once by the bootstrap."""

    uow: UnitOfWork
    runner: SagaRunner
    max_pending: int
    wait: float


async def book(
    ctx: Trips, *, user_id: str, key: str, request: dict[str, Any]
) -> tuple[store.Booking, bool]:
    """Book a trip once per idempotency key; returns (booking, made by this call)."""
    digest = request_hash(request)
    async with ctx.uow.begin() as session:
        existing = await store.by_key(session, user_id, key)
    if existing is not None:
        return await _replay(ctx, existing, digest), False
    now = utcnow()
    booking = store.Booking(
        id=str(uuid.uuid4()),
        user_id=user_id,
        status=PENDING,
        idempotency_key=key,
        request_hash=digest,
        request=request,
        destination=None,
        hotel_name=None,
        flight_number=None,
        price_cents=None,
        failure_reason=None,
        created_at=now,
        updated_at=now,
    )
    try:
        async with ctx.uow.begin() as session:
            if await store.count_pending(session, user_id) >= ctx.max_pending:
                raise TooManyPending
            await store.add(session, booking)
            await ctx.runner.begin(
                session, booking.id, BOOK, {"booking_id": booking.id, "request": request}
            )
            await record(session, booking.event("booking.requested"))
    except IntegrityError:
        # The same key raced us here; the first request's booking is the answer.
        async with ctx.uow.begin() as session:
            existing = await store.by_key(session, user_id, key)
        if existing is None:
            raise
        return await _replay(ctx, existing, digest), False
    ctx.runner.kick(booking.id)
    await ctx.runner.wait(booking.id, within=ctx.wait)
    return await _reload(ctx, booking.id), True


async def cancel(ctx: Trips, *, booking_id: str, user_id: str, is_admin: bool) -> store.Booking:
    booking = await view(ctx, booking_id=booking_id, user_id=user_id, is_admin=is_admin)
    if booking.status == CANCELLED:
        return booking
    if booking.status != CONFIRMED:
        raise NotCancellable(booking.status)
    saga_id = cancel_saga_id(booking.id)
    try:
        async with ctx.uow.begin() as session:
            await ctx.runner.begin(session, saga_id, CANCEL, {"booking_id": booking.id})
    except IntegrityError:
        pass  # a cancellation is already under way
    ctx.runner.kick(saga_id)
    await ctx.runner.wait(saga_id, within=ctx.wait)
    return await _reload(ctx, booking.id)


async def view(ctx: Trips, *, booking_id: str, user_id: str, is_admin: bool) -> store.Booking:
    async with ctx.uow.begin() as session:
        booking = await store.by_id(session, booking_id)
    # Someone else's booking answers "not found", so ids cannot be probed.
    if booking is None or not can_see(user_id, is_admin, booking.user_id):
        raise BookingNotFound(booking_id)
    return booking


async def timeline(ctx: Trips, booking_id: str) -> list[dict[str, Any]]:
    async with ctx.uow.begin() as session:
        return await saga_timeline(session, [booking_id, cancel_saga_id(booking_id)])


async def list_bookings(
    ctx: Trips, *, user_id: str, page: int, page_size: int
) -> tuple[list[store.Booking], int]:
    async with ctx.uow.begin() as session:
        return await store.list_for_user(
            session, user_id, offset=(page - 1) * page_size, limit=page_size
        )


async def _replay(ctx: Trips, existing: store.Booking, digest: str) -> store.Booking:
    """The first request's booking, once its saga is done (or the wait is over)."""
    if existing.request_hash != digest:
        raise IdempotencyMismatch(existing.idempotency_key)
    if existing.status != PENDING:
        return existing
    await ctx.runner.wait(existing.id, within=ctx.wait)
    return await _reload(ctx, existing.id)


async def _reload(ctx: Trips, booking_id: str) -> store.Booking:
    async with ctx.uow.begin() as session:
        booking = await store.by_id(session, booking_id)
    assert booking is not None
    return booking
