"""The trip as sagas: book it (hold the hotel, hold the flight, confirm both) and cancel it.

Each call is idempotent on the booking id, so a retried or resumed step never holds
twice; releasing undoes a hold or a confirmation alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.saga import SagaDefinition, SagaState, Step
from wayfare.services.bookings import store
from wayfare.services.bookings.domain import CANCELLED, CONFIRMED, FAILED
from wayfare.services.bookings.inventory import InventoryClient

__all__ = ["BOOK", "CANCEL", "Inventories", "cancel_saga_id", "definitions"]

BOOK = "book_trip"
CANCEL = "cancel_trip"
STEP_TIMEOUT = 5.0


def cancel_saga_id(booking_id: str) -> str:
    return f"{booking_id}:cancel"


@dataclass(frozen=True)
class Inventories:
    hotels: InventoryClient
    flights: InventoryClient


def definitions(inventories: Inventories) -> dict[str, SagaDefinition]:
    hotels, flights = inventories.hotels, inventories.flights

    async def hold_hotel(state: SagaState) -> Mapping[str, Any]:
        stay = state.data["request"]["hotel"]
        hold = await hotels.post(
            "/internal/holds",
            {
                "booking_id": state.id,
                "room_type_id": stay["room_type_id"],
                "check_in": stay["check_in"],
                "check_out": stay["check_out"],
                "guests": stay["guests"],
                "rooms": stay.get("rooms", 1),
            },
        )
        return {
            "hotel_name": hold.get("hotel_name"),
            "destination": hold.get("city"),
            "hotel_price_cents": hold.get("price_cents"),
        }

    async def hold_flight(state: SagaState) -> Mapping[str, Any]:
        flight = state.data["request"]["flight"]
        hold = await flights.post(
            "/internal/holds",
            {"booking_id": state.id, "flight_id": flight["flight_id"], "seats": flight["seats"]},
        )
        return {
            "flight_number": hold.get("number") or hold.get("flight_number"),
            "flight_price_cents": hold.get("price_cents"),
        }

    async def release_hotel(state: SagaState) -> None:
        await hotels.post(f"/internal/holds/{_booking_id(state)}/release")

    async def release_flight(state: SagaState) -> None:
        await flights.post(f"/internal/holds/{_booking_id(state)}/release")

    async def confirm_hotel(state: SagaState) -> None:
        await hotels.post(f"/internal/holds/{state.id}/confirm")

    async def confirm_flight(state: SagaState) -> None:
        await flights.post(f"/internal/holds/{state.id}/confirm")

    async def booked(session: AsyncSession, state: SagaState) -> None:
        await store.settle(session, state.id, CONFIRMED, _details(state))

    async def not_booked(session: AsyncSession, state: SagaState) -> None:
        await store.settle(session, state.id, FAILED, _details(state), reason=state.failure_reason)

    async def cancelled(session: AsyncSession, state: SagaState) -> None:
        await store.settle(session, _booking_id(state), CANCELLED, {})

    async def cancel_stuck(session: AsyncSession, state: SagaState) -> None:
        # Releases retry for a long time first; if they still fail, an operator must look.
        await store.note_failure(session, _booking_id(state), state.failure_reason)

    # Releases are retried (almost) forever: a cancelled trip must give its inventory back.
    forever = 10_000
    return {
        BOOK: SagaDefinition(
            kind=BOOK,
            steps=[
                Step("hold_hotel", hold_hotel, release_hotel, timeout=STEP_TIMEOUT),
                Step("hold_flight", hold_flight, release_flight, timeout=STEP_TIMEOUT),
                Step("confirm_hotel", confirm_hotel, None, timeout=STEP_TIMEOUT),
                Step("confirm_flight", confirm_flight, None, timeout=STEP_TIMEOUT),
            ],
            on_completed=booked,
            on_failed=not_booked,
        ),
        CANCEL: SagaDefinition(
            kind=CANCEL,
            steps=[
                Step("release_flight", release_flight, None, STEP_TIMEOUT, forever),
                Step("release_hotel", release_hotel, None, STEP_TIMEOUT, forever),
            ],
            on_completed=cancelled,
            on_failed=cancel_stuck,
        ),
    }


def _booking_id(state: SagaState) -> str:
    return str(state.data.get("booking_id", state.id))


def _details(state: SagaState) -> dict[str, Any]:
    prices = [state.data.get("hotel_price_cents"), state.data.get("flight_price_cents")]
    return {
        "destination": state.data.get("destination"),
        "hotel_name": state.data.get("hotel_name"),
        "flight_number": state.data.get("flight_number"),
        "price_cents": sum(p for p in prices if isinstance(p, int)) if any(prices) else None,
    }
