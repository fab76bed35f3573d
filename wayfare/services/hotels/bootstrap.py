"""The one place the hotels service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from wayfare.kit.bus import EventBus
from wayfare.kit.cache import ReadCaches
from wayfare.kit.db import UnitOfWork, ping, utcnow
from wayfare.kit.holds import expiry_sweeper, sweep_interval
from wayfare.kit.resources import migrate_service, open_resources, service_engine
from wayfare.kit.service import create_service
from wayfare.kit.settings import Settings
from wayfare.services.hotels import handlers
from wayfare.services.hotels.api import internal_router, router
from wayfare.services.hotels.seed import load_demo

__all__ = ["MIGRATIONS", "NAME", "create_app", "migrate", "seed"]

NAME = "hotels"
SEARCH_TTL = 5.0
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> None:
    await migrate_service(settings, NAME, MIGRATIONS)


async def seed(settings: Settings) -> int:
    """The demo hotels, once; returns how many were added."""
    engine = service_engine(settings, NAME)
    try:
        async with UnitOfWork(engine).begin() as session:
            return await load_demo(session, first_night=utcnow().date())
    finally:
        await engine.dispose()


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The hotels service; `bus` is shared when several services run in one process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(
            settings, NAME, bus=bus, registry=app.state.metrics_registry
        ) as resources:
            # Hotels never change once made; availability in searches may lag a few seconds.
            app.state.read_caches = ReadCaches.of(
                resources.cache, search_ttl=SEARCH_TTL, details_ttl=300.0
            )
            hotels = handlers.Hotels(
                uow=resources.uow, hold_ttl=timedelta(seconds=settings.hold_ttl)
            )
            app.state.engine = resources.engine
            app.state.relay = resources.relay
            app.state.hotels = hotels
            app.state.service_token = (
                settings.service_token.get_secret_value() if settings.service_token else None
            )

            async def expire() -> int:
                return await handlers.expire_due(hotels)

            async with expiry_sweeper(
                expire, interval=sweep_interval(settings.hold_ttl), name="hotels-hold-expiry"
            ):
                yield

    async def database(app: FastAPI) -> None:
        await ping(app.state.engine)

    return create_service(
        NAME,
        routers=[router, internal_router],
        lifespan=lifespan,
        readiness=[database],
        max_body_bytes=settings.max_body_bytes,
    )
