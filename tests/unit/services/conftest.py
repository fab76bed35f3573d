"""Fixtures the services' in-process tests share: each runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wayfare.kit.settings import Settings
from wayfare.kit.testing.servers import PostgresServer

Migrate = Callable[[Settings], Awaitable[None]]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for the service's own SQLite file, or a fresh database on the session's server."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    service = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    return server.create_database(f"{service}_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def migrated_settings(
    database_url: str | None, tmp_path: Path
) -> Callable[..., Awaitable[Settings]]:
    """`await migrated_settings(bootstrap.migrate, **fields)`: the test's settings, migrated."""

    async def make(migrate: Migrate, **fields: Any) -> Settings:
        settings = Settings(data_dir=tmp_path, database_url=database_url, **fields)
        await migrate(settings)
        return settings

    return make
