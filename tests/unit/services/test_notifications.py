"""The notifications service tells each traveller of their account and trips, once each.

The service runs in-process on SQLite and on a real PostgreSQL, fed by a `MemoryBus`
and called over ASGI with tokens signed by a key the test holds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from structlog.testing import capture_logs

from wayfare.kit.auth import ACCESS_TYP, SigningKey, TokenSigner, TokenVerifier
from wayfare.kit.auth import generate_signing_key as new_key
from wayfare.kit.bus import Event, MemoryBus
from wayfare.kit.db import UnitOfWork
from wayfare.kit.resources import service_engine
from wayfare.kit.settings import Settings
from wayfare.kit.testing.apps import in_process
from wayfare.services.notifications.bootstrap import NAME, create_app, migrate
from wayfare.services.notifications.domain import (
    BOOKING_CANCELLED,
    BOOKING_CONFIRMED,
    BOOKING_FAILED,
    WELCOME,
    UnusableEvent,
    message_for,
)
from wayfare.services.notifications.handlers import apply_event

ADA = "0b6f3c1e-0000-4000-8000-00000000ada0"
BOB = "0b6f3c1e-0000-4000-8000-00000000b0b0"
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# --- events as the users and bookings services publish them ---------------------------


def user_created(user_id: str = ADA, name: str = "Ada", **changes: Any) -> Event:
    data = {
        "id": user_id,
        "email": f"{name.lower()}@example.com",
        "name": name,
        "role": "traveller",
    }
    return Event.new(type="user.created", source="users", subject=user_id, data=data | changes)


def booking(
    outcome: str, user_id: str = ADA, *, at: datetime | None = None, **changes: Any
) -> Event:
    booking_id = str(uuid.uuid4())
    data = {
        "booking_id": booking_id,
        "user_id": user_id,
        "status": outcome.upper(),
        "destination": "Lisbon",
        "hotel_name": "Hotel Avenida",
        "check_in": "2030-06-01",
        "check_out": "2030-06-04",
        "flight_number": "TP1234",
        "reason": "no seat left on TP1234" if outcome == "failed" else None,
    }
    return Event(
        id=str(uuid.uuid4()),
        source="bookings",
        type=f"booking.{outcome}",
        time=at or datetime.now(UTC),
        data=data | changes,
        subject=booking_id,
    )


# --- the service under test -----------------------------------------------------------


@pytest.fixture
async def settings(migrated_settings: Callable[..., Awaitable[Settings]]) -> Settings:
    # The JWKS address is never fetched: the tests replace the verifier after start.
    return await migrated_settings(migrate, jwks_url="http://127.0.0.1:9/jwks.json")


@dataclass
class Service:
    app: Starlette
    bus: MemoryBus
    client: httpx.AsyncClient
    key: SigningKey
    signer: TokenSigner

    def headers(self, user_id: str) -> dict[str, str]:
        token, _ = self.signer.sign(
            self.key, typ=ACCESS_TYP, subject=user_id, ttl=300, claims={"role": "traveller"}
        )
        return {"Authorization": f"Bearer {token}"}

    async def inbox(self, user_id: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(
            "/notifications", params=params, headers=self.headers(user_id)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def read(self, user_id: str, notification_id: str) -> httpx.Response:
        return await self.client.post(
            f"/notifications/{notification_id}/read", headers=self.headers(user_id)
        )

    async def inbox_when(
        self, user_id: str, ready: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The user's first page once `ready` holds; the bus delivers in the background."""
        async with asyncio.timeout(5):
            while True:
                page = await self.inbox(user_id)
                if ready(page):
                    return page
                await asyncio.sleep(0.02)

    @property
    def uow(self) -> UnitOfWork:
        uow: UnitOfWork = self.app.state.uow
        return uow


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    key = new_key()
    public = jwt.PyJWK(key.public_jwk)

    async def lookup(kid: str) -> jwt.PyJWK | None:
        return public if kid == key.kid else None

    async with in_process(create_app, settings, base_url="http://notifications") as served:
        served.app.state.verifier = TokenVerifier(
            lookup, issuer=settings.issuer, audience=settings.audience
        )
        yield Service(
            app=served.app,
            bus=served.bus,
            client=served.client,
            key=key,
            signer=TokenSigner(issuer=settings.issuer, audience=settings.audience),
        )


def has(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda page: len(page["items"]) >= n


# --- messages made of events ----------------------------------------------------------


async def test_a_new_user_gets_a_welcome_message(service: Service) -> None:
    await service.bus.publish(user_created(ADA, "Ada"))
    page = await service.inbox_when(ADA, has(1))
    [welcome] = page["items"]
    assert welcome["kind"] == WELCOME
    assert welcome["title"] == "Welcome to Wayfare, Ada!"
    assert welcome["read_at"] is None
    assert page["unread"] == 1
    assert (page["page"], page["page_size"]) == (1, 20)


@pytest.mark.parametrize(
    ("outcome", "kind", "title", "in_body"),
    [
        (
            "confirmed",
            BOOKING_CONFIRMED,
            "Your trip to Lisbon is confirmed",
            ["Hotel Avenida", "1 June 2030", "4 June 2030", "3 nights", "TP1234"],
        ),
        (
            "failed",
            BOOKING_FAILED,
            "We could not book your trip to Lisbon",
            ["no seat left on TP1234. Nothing was charged."],
        ),
        (
            "cancelled",
            BOOKING_CANCELLED,
            "Your trip to Lisbon is cancelled",
            ["Hotel Avenida", "1 June 2030", "TP1234"],
        ),
    ],
)
async def test_each_booking_outcome_tells_the_traveller(
    service: Service, outcome: str, kind: str, title: str, in_body: list[str]
) -> None:
    await service.bus.publish(booking(outcome))
    [message] = (await service.inbox_when(ADA, has(1)))["items"]
    assert (message["kind"], message["title"]) == (kind, title)
    for fragment in in_body:
        assert fragment in message["body"]


async def test_a_requested_booking_makes_no_message(service: Service) -> None:
    assert not await apply_event(service.uow, booking("requested"))
    assert (await service.inbox(ADA))["items"] == []


async def test_an_event_delivered_twice_leaves_one_message(service: Service) -> None:
    event = booking("confirmed")
    await service.bus.publish(event)
    await service.bus.publish(event)
    await service.inbox_when(ADA, has(1))
    await asyncio.sleep(0.2)  # time for the second delivery to be applied, or not
    assert len((await service.inbox(ADA))["items"]) == 1
    assert await service.bus.dead_letters("notifications") == []
    assert not await apply_event(service.uow, event), "a third delivery was applied"


async def test_simultaneous_deliveries_of_one_event_store_it_once(service: Service) -> None:
    event = booking("failed")
    applied = await asyncio.gather(*(apply_event(service.uow, event) for _ in range(5)))
    assert sorted(applied) == [False, False, False, False, True]
    assert len((await service.inbox(ADA))["items"]) == 1


async def test_unusable_events_are_skipped_with_a_warning_and_the_rest_flow(
    service: Service,
) -> None:
    unusable = [
        booking("confirmed", user_id=""),
        booking("confirmed", check_in="soon"),
        booking("cancelled", check_out="2030-05-01"),
        booking("rebooked"),
        user_created(name="x" * 500),
        Event.new(type="user.created", source="users", data=["not", "an", "object"]),
        Event.new(type="booking.failed", source="bookings", data=None),
    ]
    with capture_logs() as logs:
        for event in unusable:
            assert not await apply_event(service.uow, event)
            await service.bus.publish(event)
        await service.bus.publish(user_created(ADA, "Ada"))
        await service.inbox_when(ADA, has(1))
    skipped = [log for log in logs if log["event"].startswith("event skipped")]
    assert len(skipped) >= len(unusable)
    assert {log["log_level"] for log in skipped} == {"warning"}
    assert await service.bus.dead_letters("notifications") == []


async def test_a_database_error_is_raised_so_the_bus_retries(
    database_url: str | None, tmp_path: Path
) -> None:
    unmigrated = Settings(data_dir=tmp_path / "empty", database_url=database_url)
    engine = service_engine(unmigrated, NAME)
    try:
        with pytest.raises(DBAPIError):
            await apply_event(UnitOfWork(engine), user_created())
    finally:
        await engine.dispose()


# --- the API --------------------------------------------------------------------------


async def test_travellers_see_and_read_only_their_own_messages(service: Service) -> None:
    await service.bus.publish(user_created(ADA, "Ada"))
    await service.bus.publish(user_created(BOB, "Bob"))
    [adas] = (await service.inbox_when(ADA, has(1)))["items"]
    [bobs] = (await service.inbox_when(BOB, has(1)))["items"]
    assert adas["title"] == "Welcome to Wayfare, Ada!"
    assert bobs["title"] == "Welcome to Wayfare, Bob!"

    refused = await service.read(BOB, adas["id"])
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await service.read(BOB, str(uuid.uuid4()))).status_code == 404
    assert (await service.inbox(ADA))["unread"] == 1, "Bob's attempt marked Ada's message"


async def test_unread_messages_come_first_then_the_newest(service: Service) -> None:
    for hours, outcome in enumerate(["confirmed", "cancelled", "failed"]):
        assert await apply_event(service.uow, booking(outcome, at=START + timedelta(hours=hours)))
    newest_first = [m["kind"] for m in (await service.inbox(ADA))["items"]]
    assert newest_first == [BOOKING_FAILED, BOOKING_CANCELLED, BOOKING_CONFIRMED]

    newest = (await service.inbox(ADA))["items"][0]
    assert (await service.read(ADA, newest["id"])).status_code == 200
    page = await service.inbox(ADA)
    assert [m["kind"] for m in page["items"]] == [
        BOOKING_CANCELLED,
        BOOKING_CONFIRMED,
        BOOKING_FAILED,
    ]
    assert page["unread"] == 2


async def test_marking_read_answers_the_message_and_keeps_the_first_time(
    service: Service,
) -> None:
    assert await apply_event(service.uow, booking("confirmed"))
    [message] = (await service.inbox(ADA))["items"]

    first = await service.read(ADA, message["id"])
    assert first.status_code == 200
    read = first.json()
    assert read["id"] == message["id"]
    assert read["title"] == message["title"]
    assert read["read_at"] is not None
    again = await service.read(ADA, message["id"])
    assert again.json()["read_at"] == read["read_at"]

    page = await service.inbox(ADA, unread_only="true")
    assert (page["items"], page["unread"]) == ([], 0)
    assert len((await service.inbox(ADA))["items"]) == 1


async def test_pages_walk_the_list_and_their_size_is_capped(service: Service) -> None:
    for minutes in range(5):
        event = booking("confirmed", at=START + timedelta(minutes=minutes))
        assert await apply_event(service.uow, event)
    first = await service.inbox(ADA, page=1, page_size=2)
    third = await service.inbox(ADA, page=3, page_size=2)
    assert (len(first["items"]), len(third["items"])) == (2, 1)
    assert first["unread"] == 5
    assert first["items"][0]["created_at"] > first["items"][1]["created_at"]
    capped = await service.inbox(ADA, page_size=1000)
    assert (capped["page_size"], len(capped["items"])) == (100, 5)
    bad = await service.client.get(
        "/notifications", params={"page": 0}, headers=service.headers(ADA)
    )
    assert bad.status_code == 422


async def test_requests_without_a_valid_token_are_refused(service: Service) -> None:
    assert (await service.client.get("/notifications")).status_code == 401
    forged = {"Authorization": "Bearer not-a-token"}
    assert (await service.client.get("/notifications", headers=forged)).status_code == 401
    assert (await service.client.post(f"/notifications/{uuid.uuid4()}/read")).status_code == 401


# --- the texts, pure --------------------------------------------------------------------


def test_a_failed_booking_without_a_reason_still_says_nothing_was_charged() -> None:
    message = message_for("booking.failed", booking("failed", reason=None).data)
    assert message is not None
    assert message.body.endswith(". Nothing was charged.")
    assert "None" not in message.body


def test_a_one_night_stay_is_singular() -> None:
    message = message_for("booking.confirmed", booking("confirmed", check_out="2030-06-02").data)
    assert message is not None
    assert "(1 night)" in message.body


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("booking.confirmed", {"user_id": ADA, "destination": "Lisbon"}),
        ("booking.failed", {"user_id": ADA, "destination": "Lisbon", "reason": 42}),
        ("user.created", {"id": ADA}),
        ("user.updated", {"id": ADA, "name": "Ada"}),
        ("user.created", "Ada"),
    ],
)
def test_incomplete_or_unknown_events_are_refused(event_type: str, data: Any) -> None:
    with pytest.raises(UnusableEvent):
        message_for(event_type, data)
