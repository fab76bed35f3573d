"""`wayfare demo`: a traveller's journey through the gateway, told step by step."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, timedelta
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

__all__ = ["DemoFailed", "run_demo"]


class DemoFailed(Exception):
    pass


class _Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, console: Console) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.console = console
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201),
        token: str | None = None,
    ) -> Any:
        all_headers = dict(headers or {})
        bearer = token or self.token
        if bearer:
            all_headers["Authorization"] = f"Bearer {bearer}"
        async with self.session.request(
            method, f"{self.base}{path}", json=json, params=params, headers=all_headers
        ) as response:
            body = await response.json(content_type=None) if response.content_length != 0 else None
            self.console.print(f"  [dim]{method} {path} → {response.status}[/]")
            if response.status not in expect:
                raise DemoFailed(f"{method} {path} answered {response.status}: {body}")
            return body


async def run_demo(base_url: str, console: Console, admin_password: str | None) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await _journey(_Client(session, base_url, console), console, admin_password)


async def _journey(api: _Client, console: Console, admin_password: str | None) -> None:
    email = f"traveller-{secrets.token_hex(4)}@example.com"
    password = "a demo passphrase " + secrets.token_hex(4)

    console.rule("1. Register and log in")
    await api.call(
        "POST",
        "/api/v1/auth/register",
        json={"email": email, "password": password, "name": "Demo Traveller"},
    )
    tokens = await api.call(
        "POST", "/api/v1/auth/login", json={"email": email, "password": password}
    )
    api.token = tokens["access_token"]
    console.print(f"  Logged in as {email}; the access token lives {tokens['expires_in']} s")

    console.rule("2. Search a hotel in Lisbon and a flight from Paris")
    check_in = date.today() + timedelta(days=30)
    check_out = check_in + timedelta(days=3)
    hotels = await api.call(
        "GET",
        "/api/v1/hotels",
        params={
            "city": "Lisbon",
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guests": 2,
        },
    )
    hotel, room = _first_room(hotels)
    console.print(
        f"  {hotel['name']}: {room['name']}, {room['price_cents'] / 100:.2f} "
        f"for {room.get('nights', 3)} nights"
    )
    flights = await api.call(
        "GET",
        "/api/v1/flights",
        params={
            "origin": "Paris",
            "destination": "Lisbon",
            "date": check_in.isoformat(),
            "seats": 2,
        },
    )
    flight = _items(flights)[0]
    console.print(f"  Flight {flight['number']} departing {flight['departs_at']}")

    console.rule("3. Book the trip (a saga: hold hotel, hold flight, confirm both)")
    booking = await api.call(
        "POST",
        "/api/v1/bookings",
        json={
            "hotel": {
                "hotel_id": hotel["id"],
                "room_type_id": room["id"],
                "check_in": check_in.isoformat(),
                "check_out": check_out.isoformat(),
                "guests": 2,
            },
            "flight": {"flight_id": flight["id"], "seats": 2},
        },
        headers={"Idempotency-Key": secrets.token_hex(8)},
        expect=(200, 201, 202),
    )
    for _ in range(100):
        if booking["status"] != "PENDING":
            break
        await asyncio.sleep(0.2)
        booking = await api.call("GET", f"/api/v1/bookings/{booking['id']}")
    console.print(f"  Booking {booking['id']} is [bold]{booking['status']}[/]")
    _print_timeline(console, booking.get("timeline") or [])
    if booking["status"] != "CONFIRMED":
        raise DemoFailed(f"the booking ended {booking['status']}: {booking['failure_reason']}")

    console.rule("4. Read the notification")
    messages: list[dict[str, Any]] = []
    for _ in range(50):
        page = await api.call("GET", "/api/v1/notifications")
        messages = [m for m in page["items"] if "confirmed" in m["title"]]
        if messages:
            break
        await asyncio.sleep(0.1)
    if not messages:
        raise DemoFailed("no confirmation notification arrived")
    console.print(f"  “{messages[0]['title']}” — {messages[0]['body']}")

    console.rule("5. The traveller's overview: profile, bookings, notifications at once")
    overview = await api.call("GET", "/api/v1/me/overview")
    latest = overview["bookings"]["items"][0] if overview.get("bookings") else None
    console.print(
        f"  {overview['profile']['name']}: latest booking "
        f"{latest['status'] if latest else '-'} to {latest and latest['destination']}, "
        f"{overview['notifications']['unread'] if overview.get('notifications') else '?'}"
        f" unread notification(s); degraded parts: {overview['degraded'] or 'none'}"
    )

    console.rule("6. See the events in the audit log (as the administrator)")
    if admin_password is None:
        console.print("  Skipped: pass --admin-password (printed by `wayfare up`) to see it.")
        return
    admin = await api.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": "admin@wayfare.local", "password": admin_password},
    )
    events = await api.call(
        "GET", "/api/v1/events", params={"subject": booking["id"]}, token=admin["access_token"]
    )
    for event in reversed(events["items"]):
        console.print(f"  {event['time']}  {event['type']:<20} from {event['source']}")
    console.rule("[green]The journey is complete")


def _items(page: Any) -> list[dict[str, Any]]:
    items = page["items"] if isinstance(page, dict) else page
    if not items:
        raise DemoFailed("the search found nothing (is the demo data seeded?)")
    return list(items)


def _first_room(page: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    for hotel in _items(page):
        rooms = hotel.get("room_types") or hotel.get("rooms") or []
        if rooms:
            return hotel, rooms[0]
    raise DemoFailed("no hotel has a room free for these dates")


def _print_timeline(console: Console, timeline: list[dict[str, Any]]) -> None:
    table = Table("step", "phase", "attempt", "outcome", "error")
    for entry in timeline:
        table.add_row(
            entry["step"],
            entry["phase"],
            str(entry["attempt"]),
            entry["outcome"],
            entry.get("error") or "",
        )
    console.print(table)
