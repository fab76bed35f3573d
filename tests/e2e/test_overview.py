"""The traveller's overview: three services at once, cached, and never stale after a write."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.system import RunningSystem, distributed
from tests.e2e.test_journey import bearer, register_and_login
from tests.e2e.trips import book, make_flight, make_hotel, trip
from wayfare.kit.testing.servers import PostgresServer, RabbitMQServer, RedisServer

OVERVIEW = "/api/v1/me/overview"
_count = iter(range(1, 1000))


def overview(client: httpx.Client, token: str) -> httpx.Response:
    return client.get(OVERVIEW, headers=bearer(token))


def test_the_overview_holds_profile_bookings_and_notifications(system: RunningSystem) -> None:
    with system.client() as client:
        email, tokens = register_and_login(client, "Overseer")
        token = tokens["access_token"]
        deadline = time.monotonic() + 10
        while True:
            first = overview(client, token)
            assert first.status_code == 200, first.text
            body = first.json()
            if body["notifications"]["unread"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert body["degraded"] == []
        assert body["profile"]["email"] == email
        assert body["bookings"]["total"] == 0
        assert body["notifications"]["items"][0]["title"].startswith("Welcome")
        again = overview(client, token)
        assert again.headers["x-cache"] == "hit"
        assert again.json() == body


def test_a_new_name_shows_in_the_very_next_overview(system: RunningSystem) -> None:
    with system.client() as client:
        _, tokens = register_and_login(client, "Before")
        token = tokens["access_token"]
        overview(client, token)
        assert overview(client, token).headers["x-cache"] == "hit"
        renamed = client.patch("/api/v1/users/me", json={"name": "After"}, headers=bearer(token))
        assert renamed.status_code == 200
        assert overview(client, token).json()["profile"]["name"] == "After"


def test_a_confirmed_booking_shows_in_the_very_next_overview(system: RunningSystem) -> None:
    hotel = make_hotel(system, rooms=2)
    flight = make_flight(system, seats=2)
    with system.client() as client:
        _, tokens = register_and_login(client, "Traveller")
        token = tokens["access_token"]
        overview(client, token)
        answer = book(client, token, trip(hotel, flight))
        assert answer.status_code == 201, "the saga should finish within the wait"
        assert answer.json()["status"] == "CONFIRMED"
        items = overview(client, token).json()["bookings"]["items"]
        assert [(b["id"], b["status"]) for b in items] == [(answer.json()["id"], "CONFIRMED")]


def test_the_overview_is_not_an_endpoint_for_strangers_or_writes(system: RunningSystem) -> None:
    with system.client() as client:
        assert client.get(OVERVIEW).status_code == 401
        _, tokens = register_and_login(client, "Writer")
        posted = client.post(OVERVIEW, headers=bearer(tokens["access_token"]))
        assert posted.status_code == 405
        assert posted.headers["content-type"] == "application/problem+json"


# -- distributed: replicas, slow or dead upstreams, Redis outages ------------------------


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresServer,
    redis: RedisServer,
    rabbitmq: RabbitMQServer,
) -> Iterator[list[RunningSystem]]:
    """Shared by the tests below: each leaves every process running and Redis up."""
    vhost = f"overview{next(_count)}"
    rabbitmq.ctl("add_vhost", vhost)
    rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with distributed(
        tmp_path_factory.mktemp("replicas"),
        database_url=postgres.create_database(f"overview_{next(_count)}_{os.getpid()}"),
        redis_url=redis.url,
        broker_url=f"{rabbitmq.url}{vhost}",
        gateways=2,
        WAYFARE_OVERVIEW_TIMEOUT="1",
    ) as systems:
        yield systems


@contextlib.contextmanager
def frozen(system: RunningSystem, *services: str) -> Iterator[None]:
    """SIGSTOP the services' processes: they accept connections but never answer."""
    pids = [system.processes[name].pid for name in services]
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)


def test_a_write_on_one_replica_is_read_on_the_other(replicas: list[RunningSystem]) -> None:
    with replicas[0].client() as first, replicas[1].client() as second:
        _, tokens = register_and_login(first, "Shared")
        token = tokens["access_token"]
        overview(second, token)
        assert overview(second, token).headers["x-cache"] == "hit", "replicas share one cache"
        first.patch("/api/v1/users/me", json={"name": "Renamed"}, headers=bearer(token))
        assert overview(second, token).json()["profile"]["name"] == "Renamed"


def test_a_slow_part_is_left_out_and_named_and_the_answer_stays_fast(
    replicas: list[RunningSystem],
) -> None:
    system = replicas[0]
    with system.client() as client:
        _, tokens = register_and_login(client, "Patient")
        token = tokens["access_token"]
        with frozen(system, "notifications"):
            started = time.monotonic()
            slow = overview(client, token)
            elapsed = time.monotonic() - started
        assert slow.status_code == 200
        assert slow.json()["degraded"] == ["notifications"]
        assert slow.json()["notifications"] is None
        assert slow.json()["profile"]["name"] == "Patient"
        assert 0.9 < elapsed < 2.0, f"took {elapsed:.2f} s, the part timeout is 1 s"
        assert slow.headers["x-cache"] == "miss"
        whole = overview(client, token)
        assert whole.json()["degraded"] == [], "a degraded answer must not be cached"


def test_with_every_part_down_the_overview_is_503(replicas: list[RunningSystem]) -> None:
    system = replicas[0]
    with system.client() as client:
        _, tokens = register_and_login(client, "Alone")
        # The gateway learns the signing keys now: verifying needs them, not the parts.
        mine = client.get("/api/v1/bookings", headers=bearer(tokens["access_token"]))
        assert mine.status_code == 200
        with frozen(system, "users", "bookings", "notifications"):
            started = time.monotonic()
            down = overview(client, tokens["access_token"])
            elapsed = time.monotonic() - started
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert elapsed < 2.0, "the parts are fetched concurrently, not one after another"


def test_with_redis_stopped_the_answers_are_still_right(
    replicas: list[RunningSystem], redis: RedisServer
) -> None:
    system = replicas[0]
    with system.client() as client:
        _, tokens = register_and_login(client, "Robust")
        token = tokens["access_token"]
        overview(client, token)
        redis.stop()
        try:
            during = overview(client, token)
            assert during.status_code == 200
            assert during.json()["profile"]["name"] == "Robust"
            client.patch("/api/v1/users/me", json={"name": "Still Robust"}, headers=bearer(token))
            assert overview(client, token).json()["profile"]["name"] == "Still Robust"
        finally:
            redis.start()
        time.sleep(1.5)  # the cache stops bypassing Redis a moment after it is back
        after = overview(client, token)
        assert after.status_code == 200
        assert after.json()["profile"]["name"] == "Still Robust"
