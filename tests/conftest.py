"""Fixtures that start real servers from the Debian binaries, once per test session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from wayfare.kit.testing.servers import (
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    ServerUnavailable,
    postgres_server,
    rabbitmq_server,
    redis_server,
)

T = TypeVar("T")


def _start_or_skip(start: Callable[[], contextlib.AbstractContextManager[T]]) -> Iterator[T]:
    """Run a server for the session; skip loudly when absent, fail when CI requires it."""
    try:
        manager = start()
        server = manager.__enter__()
    except ServerUnavailable as exc:
        if os.environ.get("WAYFARE_REQUIRE_SERVERS") == "1":
            pytest.fail(f"WAYFARE_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(f"SERVER MISSING, not run: {exc} (WAYFARE_REQUIRE_SERVERS=1 fails instead)")
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from _start_or_skip(postgres_server)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    yield from _start_or_skip(redis_server)


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQServer]:
    yield from _start_or_skip(rabbitmq_server)
