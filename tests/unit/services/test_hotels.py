"""The hotels service in-process: search, the internal hold contract, and no overbooking.

Each test runs on SQLite and on a real PostgreSQL, through the app's own lifespan.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from wayfare.kit.auth.service import SERVICE_TOKEN_HEADER
from wayfare.kit.db import utcnow
from wayfare.kit.holds import HOLD_CLOSED, SOLD_OUT
from wayfare.kit.settings import Settings
from wayfare.kit.testing.apps import InProcess, in_process
from wayfare.services.hotels import bootstrap, handlers

TOKEN = "a-test-service-token"
INTERNAL = {SERVICE_TOKEN_HEADER: TOKEN}


@dataclass(frozen=True)
class Running(InProcess):
    ctx: handlers.Hotels


@pytest.fixture
async def settings(migrated_settings: Callable[..., Awaitable[Settings]]) -> Settings:
    # These tests read availability right after changing it, so the read cache is off;
    # test_reads_are_served_from_the_cache turns it on.
    return await migrated_settings(
        bootstrap.migrate, service_token=SecretStr(TOKEN), cache_enabled=False
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with in_process(
        bootstrap.create_app, settings, base_url="http://hotels", recording=["hotel.*"]
    ) as service:
        yield Running(**vars(service), ctx=service.app.state.hotels)


@pytest.fixture
async def hotels(settings: Settings) -> AsyncIterator[Running]:
    async with running(settings) as service:
        yield service


def days(n: int) -> date:
    return utcnow().date() + timedelta(days=n)


async def a_hotel(
    client: httpx.AsyncClient, *, rooms: int = 5, max_guests: int = 2, city: str = "Lisbon"
) -> str:
    """A hotel with one room type of `rooms` rooms; returns the room type's id."""
    response = await client.post(
        "/internal/hotels",
        json={
            "name": f"Test Hotel {uuid.uuid4().hex[:6]}",
            "city": city,
            "stars": 4,
            "room_types": [
                {"name": "Double", "max_guests": max_guests, "price_cents": 10_000, "rooms": rooms}
            ],
            "days": 60,
        },
        headers=INTERNAL,
    )
    assert response.status_code == 201, response.text
    room_type_id: str = response.json()["room_types"][0]["id"]
    return room_type_id


def hold_body(room_type_id: str, booking: str | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "booking_id": booking or str(uuid.uuid4()),
        "room_type_id": room_type_id,
        "check_in": days(10).isoformat(),
        "check_out": days(13).isoformat(),
        "guests": 2,
        "rooms": 1,
    } | changes


async def free_rooms(client: httpx.AsyncClient, room_type_id: str, **stay: str | int) -> int | None:
    """Rooms free for the stay (default: the one `hold_body` books), None when not offered."""
    params: dict[str, str | int] = {
        "city": "Lisbon",
        "check_in": days(10).isoformat(),
        "check_out": days(13).isoformat(),
        "guests": 1,
        "page_size": 50,
    }
    params.update(stay)
    response = await client.get("/hotels", params=params)
    assert response.status_code == 200, response.text
    for hotel in response.json()["items"]:
        for room in hotel["room_types"]:
            if room["id"] == room_type_id:
                return int(room["available"])
    return None


async def inventory_ok(client: httpx.AsyncClient) -> None:
    report = (await client.get("/internal/inventory/check", headers=INTERNAL)).json()
    assert report["ok"], report["violations"]


async def test_the_seed_loads_three_hotels_per_city_once(
    settings: Settings, hotels: Running
) -> None:
    assert await bootstrap.seed(settings) == 21
    assert await bootstrap.seed(settings) == 0
    response = await hotels.client.get(
        "/hotels",
        params={
            "city": "lisbon",
            "check_in": days(30).isoformat(),
            "check_out": days(33).isoformat(),
        },
    )
    page = response.json()
    assert page["total"] == 3
    assert {hotel["city"] for hotel in page["items"]} == {"Lisbon"}
    for hotel in page["items"]:
        assert 2 <= len(hotel["room_types"]) <= 3
        for room in hotel["room_types"]:
            assert 5 <= room["available"] <= 20
            assert room["price_cents"] == room["nightly_price_cents"] * 3
    await inventory_ok(hotels.client)


async def test_search_offers_room_types_with_the_price_of_the_stay(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=5)
    response = await hotels.client.get(
        "/hotels",
        params={
            "city": "Lisbon",
            "check_in": days(10).isoformat(),
            "check_out": days(14).isoformat(),
            "guests": 2,
        },
    )
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["nights"], page["page"], page["page_size"]) == (1, 4, 1, 20)
    [room] = page["items"][0]["room_types"]
    assert room["id"] == room_type
    assert (room["price_cents"], room["nights"], room["available"]) == (40_000, 4, 5)


async def test_search_leaves_out_rooms_too_small_or_full_on_any_night(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=1)
    assert await free_rooms(hotels.client, room_type, guests=3) is None
    # The single room is taken for one night in the middle of the stay.
    one_night = hold_body(room_type, check_in=days(11).isoformat(), check_out=days(12).isoformat())
    assert (
        await hotels.client.post("/internal/holds", json=one_night, headers=INTERNAL)
    ).is_success
    assert await free_rooms(hotels.client, room_type) is None
    assert await free_rooms(hotels.client, room_type, check_in=days(12).isoformat()) == 1


async def test_search_pages_are_capped_at_fifty(hotels: Running) -> None:
    await a_hotel(hotels.client)
    await a_hotel(hotels.client)
    params = {"city": "Lisbon", "check_in": days(1).isoformat(), "check_out": days(2).isoformat()}
    first = (await hotels.client.get("/hotels", params=params | {"page_size": 1})).json()
    second = (
        await hotels.client.get("/hotels", params=params | {"page_size": 1, "page": 2})
    ).json()
    assert (first["total"], len(first["items"]), len(second["items"])) == (2, 1, 1)
    assert first["items"][0]["id"] != second["items"][0]["id"]
    capped = (await hotels.client.get("/hotels", params=params | {"page_size": 500})).json()
    assert capped["page_size"] == 50


async def test_invalid_stays_are_refused_with_422(hotels: Running) -> None:
    valid: dict[str, str | int] = {
        "city": "Lisbon",
        "check_in": days(5).isoformat(),
        "check_out": days(7).isoformat(),
    }
    invalid: list[dict[str, str | int]] = [
        {"check_out": days(5).isoformat()},  # not after check-in
        {"check_out": days(36).isoformat()},  # 31 nights
        {"check_in": days(-1).isoformat()},  # in the past
        {"guests": 0},
        {"city": ""},
        {"check_in": "someday"},
    ]
    for change in invalid:
        response = await hotels.client.get("/hotels", params=valid | change)
        assert response.status_code == 422, change
        assert response.headers["content-type"] == "application/problem+json"
    missing_city = {k: v for k, v in valid.items() if k != "city"}
    assert (await hotels.client.get("/hotels", params=missing_city)).status_code == 422
    assert (await hotels.client.get("/hotels", params=valid)).status_code == 200


async def test_hotel_details_list_the_room_types(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=7)
    [hotel] = (
        await hotels.client.get(
            "/hotels",
            params={
                "city": "Lisbon",
                "check_in": days(1).isoformat(),
                "check_out": days(2).isoformat(),
            },
        )
    ).json()["items"]
    details = (await hotels.client.get(f"/hotels/{hotel['id']}")).json()
    assert details["room_types"] == [
        {"id": room_type, "name": "Double", "max_guests": 2, "price_cents": 10_000, "rooms": 7}
    ]
    missing = await hotels.client.get(f"/hotels/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_the_same_booking_holds_once(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=5)
    body = hold_body(room_type, rooms=2)
    first = await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    again = await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (first.status_code, again.status_code) == (201, 200)
    hold = first.json()
    assert again.json() == hold
    assert hold["status"] == "HELD"
    assert (hold["booking_id"], hold["room_type_id"]) == (body["booking_id"], room_type)
    assert (hold["price_cents"], hold["nights"], hold["rooms"]) == (60_000, 3, 2)
    assert (hold["city"], hold["hotel_name"].startswith("Test Hotel")) == ("Lisbon", True)
    assert await free_rooms(hotels.client, room_type) == 3
    await inventory_ok(hotels.client)
    await hotels.recorder.wait_for(lambda events: len(events) >= 1)
    await asyncio.sleep(0.05)
    [held] = hotels.events
    assert (held.type, held.subject) == ("hotel.held", body["booking_id"])
    assert held.data == {
        "booking_id": body["booking_id"],
        "hotel_id": hold["hotel_id"],
        "room_type_id": room_type,
        "check_in": body["check_in"],
        "check_out": body["check_out"],
        "rooms": 2,
    }


async def test_a_stay_without_enough_rooms_is_sold_out(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=2)
    assert (
        await hotels.client.post(
            "/internal/holds", json=hold_body(room_type, rooms=2), headers=INTERNAL
        )
    ).status_code == 201
    refused = await hotels.client.post(
        "/internal/holds", json=hold_body(room_type), headers=INTERNAL
    )
    assert refused.status_code == 409
    assert refused.json()["type"] == SOLD_OUT
    await inventory_ok(hotels.client)


async def test_hold_requests_that_cannot_be_met_are_refused(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, max_guests=2)
    cases = [
        (hold_body(str(uuid.uuid4())), 404),
        (hold_body(room_type, guests=3), 422),  # one room sleeps two
        (hold_body(room_type, check_in=days(-1).isoformat()), 422),
        (hold_body(room_type, check_out=days(10).isoformat()), 422),
        (hold_body(room_type, rooms=0), 422),
        (hold_body(room_type) | {"surprise": 1}, 422),
    ]
    for body, status in cases:
        response = await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
        assert response.status_code == status, body
    # Two rooms sleep three.
    fits = await hotels.client.post(
        "/internal/holds", json=hold_body(room_type, guests=3, rooms=2), headers=INTERNAL
    )
    assert fits.status_code == 201


async def test_confirm_and_release_are_idempotent_and_give_rooms_back(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=5)
    booking = str(uuid.uuid4())
    await hotels.client.post(
        "/internal/holds", json=hold_body(room_type, booking), headers=INTERNAL
    )
    for _ in range(2):
        confirmed = await hotels.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
        assert (confirmed.status_code, confirmed.json()["status"]) == (200, "CONFIRMED")
    assert await free_rooms(hotels.client, room_type) == 4
    await inventory_ok(hotels.client)
    # Cancelling the trip releases a confirmed hold too.
    for _ in range(2):
        released = await hotels.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
        assert (released.status_code, released.json()["status"]) == (200, "RELEASED")
    assert await free_rooms(hotels.client, room_type) == 5
    await inventory_ok(hotels.client)
    fetched = await hotels.client.get(f"/internal/holds/{booking}", headers=INTERNAL)
    assert fetched.json()["status"] == "RELEASED"
    await hotels.recorder.wait_for(lambda events: len(events) >= 3)
    await asyncio.sleep(0.05)
    assert [event.type for event in hotels.events] == [
        "hotel.held",
        "hotel.confirmed",
        "hotel.released",
    ]
    assert hotels.events[-1].data["reason"] == "released"


async def test_a_released_hold_cannot_be_confirmed_or_held_again(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client)
    body = hold_body(room_type)
    booking = body["booking_id"]
    await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    await hotels.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
    confirm = await hotels.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    again = await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (confirm.status_code, confirm.json()["type"]) == (409, HOLD_CLOSED)
    assert (again.status_code, again.json()["type"]) == (409, HOLD_CLOSED)
    assert await free_rooms(hotels.client, room_type) == 5


async def test_a_release_before_the_hold_refuses_the_late_hold(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client)
    body = hold_body(room_type)
    booking = body["booking_id"]
    released = await hotels.client.post(f"/internal/holds/{booking}/release", headers=INTERNAL)
    assert (released.status_code, released.json()["status"]) == (200, "RELEASED")
    late = await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert (late.status_code, late.json()["type"]) == (409, HOLD_CLOSED)
    assert await free_rooms(hotels.client, room_type) == 5
    await inventory_ok(hotels.client)


async def test_unknown_bookings_are_404(hotels: Running) -> None:
    booking = str(uuid.uuid4())
    confirm = await hotels.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    fetched = await hotels.client.get(f"/internal/holds/{booking}", headers=INTERNAL)
    assert (confirm.status_code, fetched.status_code) == (404, 404)


async def test_expiry_gives_the_rooms_back_and_closes_the_hold(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=5)
    body = hold_body(room_type, rooms=2)
    booking = body["booking_id"]
    await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
    assert await handlers.expire_due(hotels.ctx) == 0, "not due yet"
    later = utcnow() + hotels.ctx.hold_ttl + timedelta(seconds=1)
    assert await handlers.expire_due(hotels.ctx, now=later) == 1
    assert await free_rooms(hotels.client, room_type) == 5
    await inventory_ok(hotels.client)
    fetched = await hotels.client.get(f"/internal/holds/{booking}", headers=INTERNAL)
    assert fetched.json()["status"] == "EXPIRED"
    confirm = await hotels.client.post(f"/internal/holds/{booking}/confirm", headers=INTERNAL)
    assert (confirm.status_code, confirm.json()["type"]) == (409, HOLD_CLOSED)
    await hotels.recorder.wait_for(lambda events: len(events) >= 2)
    released = hotels.events[-1]
    assert (released.type, released.data["reason"]) == ("hotel.released", "expired")


async def test_the_sweeper_expires_holds_in_the_background(settings: Settings) -> None:
    async with running(settings.model_copy(update={"hold_ttl": 1})) as hotels:
        room_type = await a_hotel(hotels.client, rooms=3)
        body = hold_body(room_type)
        await hotels.client.post("/internal/holds", json=body, headers=INTERNAL)
        assert await free_rooms(hotels.client, room_type) == 2
        await hotels.recorder.wait_for(
            lambda events: any(e.data.get("reason") == "expired" for e in events)
        )
        assert await free_rooms(hotels.client, room_type) == 3
        await inventory_ok(hotels.client)


async def test_internal_endpoints_refuse_a_missing_or_wrong_token(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client)
    calls = [
        ("POST", "/internal/holds", hold_body(room_type)),
        ("POST", "/internal/holds/b1/confirm", None),
        ("POST", "/internal/holds/b1/release", None),
        ("GET", "/internal/holds/b1", None),
        ("GET", "/internal/inventory/check", None),
        ("POST", "/internal/hotels", {"name": "x"}),
    ]
    for headers in ({}, {SERVICE_TOKEN_HEADER: "not-the-token"}):
        for method, path, body in calls:
            response = await hotels.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (method, path, headers)
    assert await free_rooms(hotels.client, room_type) == 5


async def test_two_hundred_concurrent_holds_take_exactly_fifty_rooms(hotels: Running) -> None:
    room_type = await a_hotel(hotels.client, rooms=50)

    async def hold(n: int) -> tuple[int, str | None]:
        response = await hotels.client.post(
            "/internal/holds", json=hold_body(room_type, f"race-{n}"), headers=INTERNAL
        )
        return response.status_code, response.json().get("type")

    outcomes = Counter(await asyncio.gather(*(hold(n) for n in range(200))))
    assert outcomes == {(201, None): 50, (409, SOLD_OUT): 150}
    assert await free_rooms(hotels.client, room_type) is None
    await inventory_ok(hotels.client)


async def test_reads_are_served_from_the_cache(settings: Settings) -> None:
    cached = settings.model_copy(update={"cache_enabled": True})
    async with running(cached) as hotels:
        room_type_id = await a_hotel(hotels.client, rooms=3)
        search = {
            "city": "Lisbon",
            "check_in": days(10).isoformat(),
            "check_out": days(12).isoformat(),
        }
        first = await hotels.client.get("/hotels", params=search)
        second = await hotels.client.get("/hotels", params=search)
        assert first.json() == second.json()
        rooms = [r["id"] for h in first.json()["items"] for r in h["room_types"]]
        assert room_type_id in rooms
        metrics = (await hotels.client.get("/metrics")).text
        assert 'wayfare_cache_misses_total{namespace="search"} 1.0' in metrics
        assert 'wayfare_cache_hits_total{namespace="search"} 1.0' in metrics
