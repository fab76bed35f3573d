from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import RunningSystem, distributed, embedded
from wayfare.kit.testing.servers import PostgresServer, RabbitMQServer, RedisServer


@pytest.fixture(scope="module")
def embedded_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with embedded(tmp_path_factory.mktemp("embedded")) as system:
        yield system


_databases = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def distributed_system(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresServer,
    redis: RedisServer,
    rabbitmq: RabbitMQServer,
) -> Iterator[RunningSystem]:
    database_url = postgres.create_database(f"wayfare_{next(_databases)}")
    with distributed(
        tmp_path_factory.mktemp("distributed"),
        database_url=database_url,
        redis_url=redis.url,
        broker_url=rabbitmq.url,
    ) as systems:
        yield systems[0]


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def system(request: pytest.FixtureRequest) -> RunningSystem:
    """The same tests against `wayfare up` and against services on PostgreSQL and Redis."""
    return request.getfixturevalue(f"{request.param}_system")  # type: ignore[no-any-return]
