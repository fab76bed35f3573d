"""The flights service in-process: search, the internal hold contract, and no overbooking.

Each test runs on SQLite and on a real PostgreSQL, through the app's own lifespan.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from wayfare.kit.auth.service import SERVICE_TOKEN_HEADER
from wayfare.kit.db import utcnow
from wayfare.kit.holds import HOLD_CLOSED, SOLD_OUT
from wayfare.kit.settings import Settings
from wayfare.kit.testing.apps import InProcess, in_process
from wayfare.services.flights import bootstrap, handlers

TOKEN = "a-test-service-token"
INTERNAL = {SERVICE_TOKEN_HEADER: TOKEN}


@dataclass(frozen=True)
class Running(InProcess):
    ctx: handlers.Flights


@pytest.fixture
async def settings(migrated_settings: Callable[..., Awaitable[Settings]]) -> Settings:
    # These tests read availability right after changing it, so the read cache is off.
    return await migrated_settings(
        bootstrap.migrate, service_token=SecretStr(TOKEN), cache_enabled=False
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with in_process(
        bootstrap.create_app, settings, base_url="http://flights", recording=["flight.*"]
    ) as service:
        yield Running(**vars(service), ctx=service.app.state.flights)


@pytest.fixture
async def flights(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings) as service:
        yield service


def days(n: int) -> date:
    return utcnow().date() + timedelta(days=n)


def at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour), tzinfo=UTC).isoformat()


async def a_flight(
    client: httpx.AsyncClient, *, seats: int = 5, day: date | None = None, **changes: Any
) -> str:
    """A flight Lisbon → Paris with `seats` seats, in ten days by default; returns its id."""
    day = day or days(10)
    body = {
        "number": "WF999",
        "origin": "Lisbon",
        "destination": "Paris",
        "departs_at": at(day, 9),
        "arrives_at": at(day, 12),
        "price_cents": 12_000,
        "seats": seats,
    } | changes
    response = await client.post("/internal/flights", json=body, headers=INTERNAL)
    assert response.status_code == 201, response.text
    flight_id: str = response.json()["id"]
    return flight_id


def hold_body(flight_id: str, booking: str | None = None, seats: int = 1) -> dict[str, Any]:
    return {"booking_id": booking or str(uuid.uuid4()), "flight_id": flight_id, "seats": seats}


async def free_seats(client: httpx.AsyncClient, flight_id: str) -> int:
    response = await client.get(f"/flights/{flight_id}")
    assert response.status_code == 200, response.text
    return int(response.json()["available"])


async def inventory_ok(client: httpx.AsyncClient) -> None:
    report = (await client.get("/internal/inventory/check", headers=INTERNAL)).json()
    assert report["ok"], report["violations"]


async def test_the_seed_flies_every_route_every_day_once(
    settings: Settings, flights: Running
) -> None:
    loaded = await bootstrap.seed(settings)
    assert 42 * 365 <= loaded <= 42 * 365 * 2
    assert await bootstrap.seed(settings) == 0
    for day in (days(1), days(200), days(364)):
        page = (
            await flights.client.get(
                "/flights",
                params={"origin": "paris", "destination": "LISBON", "date": day.isoformat()},
            )
        ).json()
        assert 1 <= page["total"] <= 2
        for flight in page["items"]:
            assert (flight["origin"], flight["destination"]) == ("Paris", "Lisbon")
            assert flight["departs_at"].startswith(day.isoformat())
    await inventory_ok(flights.client)


async def test_search_finds_the_days_flights_with_the_seats_free(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=3)
    await a_flight(flights.client, day=days(11))
    params: dict[str, str | int] = {
        "origin": "Lisbon",
        "destination": "Paris",
        "date": days(10).isoformat(),
        "seats": 3,
    }
    page = (await flights.client.get("/flights", params=params)).json()
    assert (page["total"], page["seats"], page["date"]) == (1, 3, days(10).isoformat())
    [offer] = page["items"]
    assert offer["id"] == flight
    assert (offer["seat_price_cents"], offer["price_cents"], offer["available"]) == (
        12_000,
        36_000,
        3,
    )
    params["seats"] = 4
    assert (await flights.client.get("/flights", params=params)).json()["total"] == 0


async def test_invalid_searches_are_refused_with_422(flights: Running) -> None:
    valid: dict[str, str | int] = {
        "origin": "Lisbon",
        "destination": "Paris",
        "date": days(3).isoformat(),
    }
    invalid: list[dict[str, str | int]] = [
        {"date": days(-1).isoformat()},
        {"seats": 0},
        {"seats": 10},
        {"destination": "lisbon"},
        {"origin": ""},
        {"date": "soon"},
    ]
    for change in invalid:
        response = await flights.client.get("/flights", params=valid | change)
        assert response.status_code == 422, change
        assert response.headers["content-type"] == "application/problem+json"
    for missing in valid:
        params = {k: v for k, v in valid.items() if k != missing}
        assert (await flights.client.get("/flights", params=params)).status_code == 422
    assert (await flights.client.get("/flights", params=valid)).status_code == 200


async def test_flight_details_and_unknown_flights(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=5)
    details = (await flights.client.get(f"/flights/{flight}")).json()
    assert (details["number"], details["seats"], details["available"]) == ("WF999", 5, 5)
    assert (await flights.client.get(f"/flights/{uuid.uuid4()}")).status_code == 404
    unknown = await flights.client.post(
        "/internal/holds", json=hold_body(str(uuid.uuid4())), headers=INTERNAL
    )
    assert unknown.status_code == 404


async def test_flights_that_make_no_sense_are_not_added(flights: Running) -> None:
    day = days(5)
    for changes in (
        {"destination": "LISBON"},
        {"arrives_at": at(day, 8)},
        {"departs_at": "2030-01-01T09:00:00"},  # no time zone
    ):
        body = {
            "number": "WF1",
            "origin": "Lisbon",
            "destination": "Paris",
            "departs_at": at(day, 9),
            "arrives_at": at(day, 12),
            "price_cents": 100,
            "seats": 1,
        } | changes
        response = await flights.client.post("/internal/flights", json=body, headers=INTERNAL)
        assert response.status_code == 422, changes


async def test_the_same_booking_holds_once(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=5)
    body = hold_body(flight, seats=2)
    first = await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    again = await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    hold = first.json()
    assert (hold["status"], hold["seats"], hold["price_cents"]) == ("HELD", 2, 24_000)
    assert (hold["flight_id"], hold["number"]) == (flight, "WF999")
    assert await free_seats(flights.client, flight) == 3
    await inventory_ok(flights.client)
    await flights.recorder.wait_for(lambda events: len(events) >= 1)
    await asyncio.sleep(0.05)
    [held] = flights.events
    assert (held.type, held.subject) == ("flight.held", body["booking_id"])
    assert held.data == {"booking_id": body["booking_id"], "flight_id": flight, "seats": 2}


async def test_a_flight_without_enough_seats_is_sold_out(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=2)
    first = await flights.client.post(
        "/internal/holds", json=hold_body(flight, seats=2), headers=INTERNAL
    )
    refused = await flights.client.post("/internal/holds", json=hold_body(flight), headers=INTERNAL)
    assert first.status_code == 201
    assert (refused.status_code, refused.json()["type"]) == (409, SOLD_OUT)
    await inventory_ok(flights.client)


async def test_a_departed_flight_cannot_be_held(flights: Running) -> None:
    now = utcnow()
    flight = await a_flight(
        flights.client,
        departs_at=(now - timedelta(hours=1)).isoformat(),
        arrives_at=(now + timedelta(hours=1)).isoformat(),
    )
    response = await flights.client.post(
        "/internal/holds", json=hold_body(flight), headers=INTERNAL
    )
    assert response.status_code == 422


async def test_confirm_and_release_are_idempotent_and_give_seats_back(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=5)
    booking = str(uuid.uuid4())
    await flights.client.post("/internal/holds", json=hold_body(flight, booking), headers=INTERNAL)
    for _ in range(2):
        confirmed = await flights.client.post(
            f"/internal/holds/{booking}/confirm", headers=INTERNAL
        )
        assert (confirmed.status_code, confirmed.json()["status"]) == (200, "CONFIRMED")
    assert await free_seats(flights.client, flight) == 4
    await inventory_ok(flights.client)
    for _ in range(2):
        released = await flights.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
        assert (released.status_code, released.json()["status"]) == (200, "RELEASED")
    assert await free_seats(flights.client, flight) == 5
    await inventory_ok(flights.client)
    await flights.recorder.wait_for(lambda events: len(events) >= 3)
    await asyncio.sleep(0.05)
    assert [event.type for event in flights.events] == [
        "flight.held",
        "flight.confirmed",
        "flight.released",
    ]


async def test_a_released_hold_cannot_be_confirmed_or_held_again(flights: Running) -> None:
    flight = await a_flight(flights.client)
    body = hold_body(flight)
    booking = body["booking_id"]
    await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    await flights.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
    confirm = await flights.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    again = await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (confirm.status_code, confirm.json()["type"]) == (409, HOLD_CLOSED)
    assert (again.status_code, again.json()["type"]) == (409, HOLD_CLOSED)
    assert await free_seats(flights.client, flight) == 5


async def test_a_release_before_the_hold_refuses_the_late_hold(flights: Running) -> None:
    flight = await a_flight(flights.client)
    body = hold_body(flight)
    booking = body["booking_id"]
    released = await flights.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
    assert (released.status_code, released.json()["status"]) == (200, "RELEASED")
    late = await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (late.status_code, late.json()["type"]) == (409, HOLD_CLOSED)
    assert await free_seats(flights.client, flight) == 5


async def test_unknown_bookings_are_404(flights: Running) -> None:
    booking = str(uuid.uuid4())
    confirm = await flights.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    fetched = await flights.client.get(f"/internal/holds/{booking}", headers=INTERNAL)
    assert (confirm.status_code, fetched.status_code) == (404, 404)


async def test_expiry_gives_the_seats_back_and_closes_the_hold(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=5)
    body = hold_body(flight, seats=2)
    booking = body["booking_id"]
    await flights.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert await handlers.expire_due(flights.ctx) == 0, "not due yet"
    later = utcnow() + flights.ctx.hold_ttl + timedelta(seconds=1)
    assert await handlers.expire_due(flights.ctx, now=later) == 1
    assert await free_seats(flights.client, flight) == 5
    await inventory_ok(flights.client)
    fetched = await flights.client.get(f"/internal/holds/{booking}", headers=INTERNAL)
    assert fetched.json()["status"] == "EXPIRED"
    confirm = await flights.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    assert (confirm.status_code, confirm.json()["type"]) == (409, HOLD_CLOSED)
    await flights.recorder.wait_for(lambda events: len(events) >= 2)
    released = flights.events[-1]
    assert (released.type, released.data["reason"]) == ("flight.released", "expired")


async def test_the_sweeper_expires_holds_in_the_background(settings: Settings) -> None:
    async with running(settings.model_copy(update={"hold_ttl": 1})) as flights:
        flight = await a_flight(flights.client, seats=3)
        await flights.client.post("/internal/holds", json=hold_body(flight), headers=INTERNAL)
        assert await free_seats(flights.client, flight) == 2
        await flights.recorder.wait_for(
            lambda events: any(e.data.get("reason") == "expired" for e in events)
        )
        assert await free_seats(flights.client, flight) == 3
        await inventory_ok(flights.client)


async def test_internal_endpoints_refuse_a_missing_or_wrong_token(flights: Running) -> None:
    flight = await a_flight(flights.client)
    calls = [
        ("POST", "/internal/holds", hold_body(flight)),
        ("POST", "/internal/holds/b1/confirm", None),
        ("POST", "/internal/holds/b1/release", None),
        ("GET", "/internal/holds/b1", None),
        ("GET", "/internal/inventory/check", None),
        ("POST", "/internal/flights", {"number": "x"}),
    ]
    for headers in ({}, {SERVICE_TOKEN_HEADER: "not-the-token"}):
        for method, path, body in calls:
            response = await flights.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (method, path, headers)
    assert await free_seats(flights.client, flight) == 5


async def test_two_hundred_concurrent_holds_take_exactly_fifty_seats(flights: Running) -> None:
    flight = await a_flight(flights.client, seats=50)

    async def hold(n: int) -> tuple[int, str | None]:
        response = await flights.client.post(
            "/internal/holds", json=hold_body(flight, f"race-{n}"), headers=INTERNAL
        )
        return response.status_code, response.json().get("type")

    outcomes = Counter(await asyncio.gather(*(hold(n) for n in range(200))))
    assert outcomes == {(201, None): 50, (409, SOLD_OUT): 150}
    assert await free_seats(flights.client, flight) == 0
    await inventory_ok(flights.client)
