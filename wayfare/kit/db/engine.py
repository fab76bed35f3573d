"""Async SQLAlchemy engines: SQLite (WAL, busy timeout) embedded, PostgreSQL via asyncpg."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wayfare.kit.settings import Settings

__all__ = ["create_engine", "ping"]


def create_engine(url: str, settings: Settings, *, schema: str | None = None) -> AsyncEngine:
    """An engine for one service; in PostgreSQL its tables live in `schema`."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    if sa_url.drivername in ("postgresql", "postgres"):
        sa_url = sa_url.set(drivername="postgresql+asyncpg")
    connect_args: dict[str, Any] = {}
    if schema:
        # The schema comes first so each service sees its own tables and alembic_version.
        connect_args["server_settings"] = {"search_path": f"{schema},public"}
    return create_async_engine(
        sa_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=settings.db_pool_recycle,
        connect_args=connect_args,
    )


def _sqlite_engine(url: str, settings: Settings) -> AsyncEngine:
    sa_url = make_url(url)
    if sa_url.database and sa_url.database != ":memory:":
        from pathlib import Path

        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A local file cannot drop a connection, so a ping per checkout buys nothing.
        pool_pre_ping=False,
        pool_recycle=settings.db_pool_recycle,
    )
    busy_timeout = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
