"""What every service opens at start and closes at stop, wired the same way everywhere.

A service's bootstrap asks for its `Resources` inside its lifespan: its own database
engine (SQLite file or PostgreSQL schema named after it), the bus (shared when several
services run in one process, owned otherwise), an outbox relay woken by every commit
that recorded events, a unit of work, and one pooled HTTP client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.bus import EventBus, bus_for
from wayfare.kit.cache import Cache
from wayfare.kit.db import UnitOfWork, create_engine, upgrade
from wayfare.kit.http import create_client_session
from wayfare.kit.outbox import OutboxRelay
from wayfare.kit.settings import Settings

__all__ = ["Resources", "migrate_service", "open_resources", "service_engine"]


def service_engine(settings: Settings, name: str) -> AsyncEngine:
    return create_engine(settings.service_database_url(name), settings, schema=name)


async def migrate_service(settings: Settings, name: str, migrations: Path) -> None:
    engine = service_engine(settings, name)
    try:
        await upgrade(engine, migrations, schema=name)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Resources:
    engine: AsyncEngine
    bus: EventBus
    relay: OutboxRelay
    uow: UnitOfWork
    http: aiohttp.ClientSession
    # None when caching is off or no metrics registry was given to count its hits.
    cache: Cache | None = None


@asynccontextmanager
async def open_resources(
    settings: Settings,
    name: str,
    *,
    bus: EventBus | None = None,
    outbox: bool = True,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        engine = service_engine(settings, name)
        stack.push_async_callback(engine.dispose)
        http = create_client_session(
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
        )
        stack.push_async_callback(http.close)
        if bus is None:
            bus = bus_for(settings.broker_url)
            await bus.start()
            stack.push_async_callback(bus.close)
        relay = OutboxRelay(engine, bus)
        if outbox:
            await relay.start()
            stack.push_async_callback(relay.close)
        uow = UnitOfWork(engine, on_commit=relay.after_commit if outbox else None)
        cache = None
        if settings.cache_enabled and registry is not None:
            cache = Cache.from_url(settings.redis_url, registry=registry, prefix=f"wayfare:{name}")
            await cache.start()
            stack.push_async_callback(cache.close)
        yield Resources(engine=engine, bus=bus, relay=relay, uow=uow, http=http, cache=cache)
