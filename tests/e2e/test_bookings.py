"""Booking a trip through the gateway, all or nothing, embedded and on real servers."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.system import RunningSystem
from tests.e2e.test_journey import bearer, register_and_login
from tests.e2e.trips import (
    assert_inventory_conserved,
    book,
    hold_status,
    make_flight,
    make_hotel,
    trip,
    wait_until_final,
)


def notification_titles(client: httpx.Client, token: str, *, containing: str) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        items = client.get("/api/v1/notifications", headers=bearer(token)).json()["items"]
        titles = [item["title"] for item in items if containing in item["title"]]
        if titles or time.monotonic() > deadline:
            return titles
        time.sleep(0.1)


def test_a_trip_is_booked_whole_and_the_traveller_is_told(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=5)
    flight = make_flight(system, seats=10)
    with system.client() as client:
        _, tokens = register_and_login(client, "Booker")
        token = tokens["access_token"]
        answer = book(client, token, trip(hotel, flight))
        assert answer.status_code in (201, 202), answer.text
        assert answer.headers["location"] == f"/bookings/{answer.json()['id']}"
        booking = wait_until_final(client, token, answer.json()["id"])
        assert booking["status"] == "CONFIRMED", booking
        assert booking["destination"] == "Lisbon"
        assert [(t["step"], t["outcome"]) for t in booking["timeline"]] == [
            ("hold_hotel", "ok"),
            ("hold_flight", "ok"),
            ("confirm_hotel", "ok"),
            ("confirm_flight", "ok"),
        ]
        assert hold_status(system, "hotels", booking["id"]) == "CONFIRMED"
        assert hold_status(system, "flights", booking["id"]) == "CONFIRMED"
        assert notification_titles(client, token, containing="confirmed") == [
            "Your trip to Lisbon is confirmed"
        ]
    assert_inventory_conserved(system)


def test_a_sold_out_flight_releases_the_hotel_hold(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=5)
    flight = make_flight(system, seats=1)
    with system.client() as client:
        _, tokens = register_and_login(client, "Unlucky")
        token = tokens["access_token"]
        answer = book(client, token, trip(hotel, flight, seats=2))
        booking = wait_until_final(client, token, answer.json()["id"])
        assert booking["status"] == "FAILED"
        assert "seat" in booking["failure_reason"] or "sold out" in booking["failure_reason"]
        steps = [(t["step"], t["phase"], t["outcome"]) for t in booking["timeline"]]
        assert ("hold_flight", "action", "refused") in steps
        assert ("hold_hotel", "compensation", "ok") in steps
        assert hold_status(system, "hotels", booking["id"]) == "RELEASED"
        assert hold_status(system, "flights", booking["id"]) is None
        assert notification_titles(client, token, containing="could not") != []
    assert_inventory_conserved(system)


def test_the_same_key_sent_ten_times_at_once_books_once(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=5)
    flight = make_flight(system, seats=10)
    with system.client() as client:
        _, tokens = register_and_login(client, "Impatient")
        token = tokens["access_token"]
        key = secrets.token_hex(8)
        body = trip(hotel, flight)

        def send(_: int) -> httpx.Response:
            with system.client() as own:
                return book(own, token, body, key)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(send, range(10)))
        assert all(a.status_code in (200, 201, 202) for a in answers), [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        mine = client.get("/api/v1/bookings", headers=bearer(token)).json()
        assert mine["total"] == 1
        final = wait_until_final(client, token, answers[0].json()["id"])
        assert final["status"] == "CONFIRMED"
    assert_inventory_conserved(system)


def test_the_same_key_with_another_request_is_refused(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=5)
    flight = make_flight(system, seats=10)
    with system.client() as client:
        _, tokens = register_and_login(client, "Fickle")
        token = tokens["access_token"]
        key = secrets.token_hex(8)
        first = book(client, token, trip(hotel, flight, seats=1), key)
        assert first.status_code in (201, 202)
        second = book(client, token, trip(hotel, flight, seats=2), key)
        assert second.status_code == 422
        assert second.headers["content-type"] == "application/problem+json"
        missing = client.post("/api/v1/bookings", json=trip(hotel, flight), headers=bearer(token))
        assert missing.status_code == 422


def test_a_traveller_cannot_see_or_cancel_anothers_booking(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=5)
    flight = make_flight(system, seats=10)
    with system.client() as client:
        _, alice = register_and_login(client, "Alice")
        _, mallory = register_and_login(client, "Mallory")
        booking = book(client, alice["access_token"], trip(hotel, flight)).json()
        other = bearer(mallory["access_token"])
        assert client.get(f"/api/v1/bookings/{booking['id']}", headers=other).status_code == 404
        cancel = client.post(f"/api/v1/bookings/{booking['id']}/cancel", headers=other)
        assert cancel.status_code == 404
        assert client.get("/api/v1/bookings", headers=other).json()["total"] == 0
        final = wait_until_final(client, alice["access_token"], booking["id"])
        assert final["status"] == "CONFIRMED", "Mallory's attempts must not have touched it"


def test_a_cancelled_trip_gives_its_rooms_and_seats_back(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=1)
    flight = make_flight(system, seats=1)
    with system.client() as client:
        _, tokens = register_and_login(client, "Changer")
        token = tokens["access_token"]
        first = wait_until_final(
            client, token, book(client, token, trip(hotel, flight)).json()["id"]
        )
        assert first["status"] == "CONFIRMED"
        cancelled = client.post(f"/api/v1/bookings/{first['id']}/cancel", headers=bearer(token))
        assert cancelled.status_code in (200, 202), cancelled.text
        assert wait_until_final(client, token, first["id"])["status"] == "CANCELLED"
        assert hold_status(system, "hotels", first["id"]) == "RELEASED"
        assert hold_status(system, "flights", first["id"]) == "RELEASED"
        # The only room and seat are free again: the next trip gets them.
        again = wait_until_final(
            client, token, book(client, token, trip(hotel, flight)).json()["id"]
        )
        assert again["status"] == "CONFIRMED"
    assert_inventory_conserved(system)


def test_two_hundred_bookings_race_for_the_last_fifty_rooms(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=50)
    flight = make_flight(system, seats=500)
    with system.client() as client:
        _, tokens = register_and_login(client, "Crowd")
    token = tokens["access_token"]

    def attempt(_: int) -> str:
        with system.client() as own:
            answer = book(own, token, trip(hotel, flight))
            assert answer.status_code in (201, 202), answer.text
            booking: dict[str, Any] = answer.json()
            return str(booking["id"])

    with ThreadPoolExecutor(40) as pool:
        ids = list(pool.map(attempt, range(200)))
    with system.client() as client:
        outcomes = [wait_until_final(client, token, booking_id)["status"] for booking_id in ids]
    assert outcomes.count("CONFIRMED") == 50
    assert outcomes.count("FAILED") == 150
    assert_inventory_conserved(system)
