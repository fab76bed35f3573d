"""Rate limits: exactly N admitted, then 429 with its headers; replicas share one budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import RunningSystem, distributed, embedded
from tests.e2e.test_journey import bearer, register_and_login
from wayfare.kit.testing.servers import PostgresServer, RedisServer

BUDGET = 6
AUTH_BUDGET = 4


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with embedded(
        tmp_path_factory.mktemp("limited"),
        WAYFARE_RATE_LIMIT_DEFAULT=f"{BUDGET}/hour",
        WAYFARE_RATE_LIMIT_AUTH=f"{AUTH_BUDGET}/hour",
    ) as system:
        yield system


def assert_refused(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"] == f"{limit};w=3600"
    assert f"limit={limit}, remaining=0" in response.headers["ratelimit"]


def test_each_user_gets_exactly_the_budget_then_429(limited: RunningSystem) -> None:
    with limited.client() as client:
        _, alice = register_and_login(client, "Alice")
        _, bob = register_and_login(client, "Bob")
        statuses = [
            client.get("/api/v1/users/me", headers=bearer(alice["access_token"])).status_code
            for _ in range(BUDGET)
        ]
        assert statuses == [200] * BUDGET
        assert_refused(
            client.get("/api/v1/users/me", headers=bearer(alice["access_token"])), BUDGET
        )
        # The budget is per user: Bob's is untouched by Alice's.
        assert (
            client.get("/api/v1/users/me", headers=bearer(bob["access_token"])).status_code == 200
        )


def test_login_and_register_have_a_stricter_budget_per_address(limited: RunningSystem) -> None:
    # The two accounts of the test above used all four auth requests of this address.
    with limited.client() as client:
        response = client.post(
            "/api/v1/auth/login", json={"email": "x@example.com", "password": "whatever it is"}
        )
        assert_refused(response, AUTH_BUDGET)


def test_two_gateways_on_one_redis_admit_the_budget_once(
    tmp_path: Path, postgres: PostgresServer, redis: RedisServer
) -> None:
    with distributed(
        tmp_path,
        database_url=postgres.create_database("ratelimit_replicas"),
        redis_url=redis.url,
        gateways=2,
        WAYFARE_RATE_LIMIT_DEFAULT=f"{BUDGET}/hour",
    ) as gateways:
        with gateways[0].client() as first, gateways[1].client() as second:
            _, tokens = register_and_login(first, "Replica")
            headers = bearer(tokens["access_token"])
            statuses = [
                (first if i % 2 == 0 else second)
                .get("/api/v1/users/me", headers=headers)
                .status_code
                for i in range(BUDGET * 2)
            ]
        assert statuses.count(200) == BUDGET
        assert statuses[:BUDGET] == [200] * BUDGET
        assert statuses[BUDGET:] == [429] * BUDGET
