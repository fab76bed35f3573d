"""The saga survives its neighbours and itself: a dead flights service, a killed bookings process.

Each test runs its own distributed system (PostgreSQL, RabbitMQ, one process per service),
because it stops processes the other tests need.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import RunningSystem, distributed, stop, wait_ready, wayfare
from tests.e2e.test_journey import register_and_login
from tests.e2e.trips import (
    assert_inventory_conserved,
    book,
    hold_status,
    make_flight,
    make_hotel,
    trip,
    wait_until_final,
)
from wayfare.kit.testing.servers import PostgresServer, RabbitMQServer, RedisServer

_count = iter(range(1, 1000))


@pytest.fixture
def fresh_system(
    tmp_path: Path, postgres: PostgresServer, redis: RedisServer, rabbitmq: RabbitMQServer
) -> Iterator[RunningSystem]:
    vhost = f"saga{next(_count)}"
    rabbitmq.ctl("add_vhost", vhost)
    rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with distributed(
        tmp_path,
        database_url=postgres.create_database(f"saga_{next(_count)}_{os.getpid()}"),
        redis_url=redis.url,
        broker_url=f"{rabbitmq.url}{vhost}",
        # Short bounds so the failures below play out in seconds.
        WAYFARE_BOOKING_WAIT="1",
        WAYFARE_SAGA_LEASE="2",
    ) as systems:
        yield systems[0]


def timeline_has(client: httpx.Client, token: str, booking_id: str, step: str) -> bool:
    got = client.get(f"/api/v1/bookings/{booking_id}", headers={"Authorization": f"Bearer {token}"})
    return any(
        t["step"] == step and t["phase"] == "action" and t["outcome"] == "ok"
        for t in got.json()["timeline"]
    )


def test_flights_down_means_retries_then_the_hotel_is_released(
    fresh_system: RunningSystem,
) -> None:
    system = fresh_system
    hotel = make_hotel(system, rooms=3)
    flight = make_flight(system, seats=3)
    stop(system.processes["flights"], signal.SIGKILL)
    with system.client() as client:
        _, tokens = register_and_login(client, "Stranded")
        token = tokens["access_token"]
        booking_id = book(client, token, trip(hotel, flight)).json()["id"]
        booking = wait_until_final(client, token, booking_id)
    assert booking["status"] == "FAILED"
    assert "hold_flight kept failing" in booking["failure_reason"]
    attempts = [t for t in booking["timeline"] if t["step"] == "hold_flight"]
    assert len(attempts) >= 2, "a transient failure must be retried"
    assert all(t["outcome"] in ("retry", "failed") for t in attempts)
    assert ("hold_hotel", "compensation", "ok") in [
        (t["step"], t["phase"], t["outcome"]) for t in booking["timeline"]
    ]
    assert hold_status(system, "hotels", booking_id) == "RELEASED"
    with system.internal("hotels") as hotels:
        assert hotels.get("/internal/inventory/check").json()["ok"]


def test_a_bookings_process_killed_mid_saga_resumes_it_on_restart(
    fresh_system: RunningSystem,
) -> None:
    system = fresh_system
    hotel = make_hotel(system, rooms=3)
    flight = make_flight(system, seats=3)
    flights = system.processes["flights"]
    with system.client() as client:
        _, tokens = register_and_login(client, "Resilient")
        token = tokens["access_token"]
        # Frozen, not dead: the flight hold hangs, so the saga sits between the two holds.
        os.killpg(flights.pid, signal.SIGSTOP)
        try:
            answer = book(client, token, trip(hotel, flight))
            assert answer.status_code == 202, answer.text
            booking_id = answer.json()["id"]
            deadline = time.monotonic() + 20
            while not timeline_has(client, token, booking_id, "hold_hotel"):
                assert time.monotonic() < deadline, "the hotel was never held"
                time.sleep(0.05)
            assert hold_status(system, "hotels", booking_id) == "HELD"
            stop(system.processes["bookings"], signal.SIGKILL)
        finally:
            os.killpg(flights.pid, signal.SIGCONT)
        port = system.services["bookings"].rsplit(":", 1)[1]
        system.processes["bookings"] = wayfare(
            "serve",
            "bookings",
            "--port",
            port,
            env=system.env,
            log=system.data_dir / "bookings-restarted.log",
        )
        wait_ready(system, system.services["bookings"])
        booking = wait_until_final(client, token, booking_id, within=90)
    assert booking["status"] in ("CONFIRMED", "FAILED")
    expected = "CONFIRMED" if booking["status"] == "CONFIRMED" else "RELEASED"
    assert hold_status(system, "hotels", booking_id) == expected, "a hold was left behind"
    assert hold_status(system, "flights", booking_id) in (expected, None)
    assert_inventory_conserved(system)
