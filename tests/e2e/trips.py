"""Helpers for booking trips through the gateway, and for checking the inventory after."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.system import RunningSystem

__all__ = [
    "FINAL",
    "assert_inventory_conserved",
    "book",
    "hold_status",
    "make_flight",
    "make_hotel",
    "trip",
    "wait_until_final",
]

FINAL = {"CONFIRMED", "FAILED", "CANCELLED"}
DAYS_AHEAD = 20


def make_hotel(system: RunningSystem, rooms: int, city: str = "Lisbon") -> tuple[str, str]:
    """A hotel with one room type of exactly `rooms` rooms; returns (hotel id, room type id)."""
    with system.internal("hotels") as hotels:
        made = hotels.post(
            "/internal/hotels",
            json={
                "name": f"Test Hotel {secrets.token_hex(3)}",
                "city": city,
                "stars": 3,
                "room_types": [
                    {"name": "Double", "max_guests": 2, "price_cents": 9000, "rooms": rooms}
                ],
                "days": DAYS_AHEAD + 10,
            },
        )
        assert made.status_code == 201, made.text
        body = made.json()
        return body["id"], body["room_types"][0]["id"]


def make_flight(system: RunningSystem, seats: int, destination: str = "Lisbon") -> str:
    departs = datetime.combine(
        date.today() + timedelta(days=DAYS_AHEAD), datetime.min.time(), UTC
    ) + timedelta(hours=9)
    with system.internal("flights") as flights:
        made = flights.post(
            "/internal/flights",
            json={
                "number": f"WF{secrets.randbelow(10_000):04d}",
                "origin": "Paris",
                "destination": destination,
                "departs_at": departs.isoformat(),
                "arrives_at": (departs + timedelta(hours=2)).isoformat(),
                "price_cents": 12000,
                "seats": seats,
            },
        )
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


def trip(hotel: tuple[str, str], flight_id: str, seats: int = 1) -> dict[str, Any]:
    check_in = date.today() + timedelta(days=DAYS_AHEAD)
    return {
        "hotel": {
            "hotel_id": hotel[0],
            "room_type_id": hotel[1],
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=2)).isoformat(),
            "guests": 2,
        },
        "flight": {"flight_id": flight_id, "seats": seats},
    }


def book(
    client: httpx.Client, token: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return client.post(
        "/api/v1/bookings",
        json=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key or secrets.token_hex(8),
        },
    )


def wait_until_final(
    client: httpx.Client, token: str, booking_id: str, within: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        got = client.get(
            f"/api/v1/bookings/{booking_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert got.status_code == 200, got.text
        booking: dict[str, Any] = got.json()
        if booking["status"] in FINAL:
            return booking
        if time.monotonic() > deadline:
            raise AssertionError(f"booking still {booking['status']} after {within} s: {booking}")
        time.sleep(0.1)


def hold_status(system: RunningSystem, service: str, booking_id: str) -> str | None:
    with system.internal(service) as internal:
        got = internal.get(f"/internal/holds/{booking_id}")
    if got.status_code == 404:
        return None
    assert got.status_code == 200, got.text
    return str(got.json()["status"])


def assert_inventory_conserved(system: RunningSystem) -> None:
    """held + confirmed + free = capacity everywhere, and the counters match the holds."""
    for service in ("hotels", "flights"):
        with system.internal(service) as internal:
            check = internal.get("/internal/inventory/check").json()
        assert check["ok"], f"{service} inventory is not conserved: {check['violations'][:5]}"
