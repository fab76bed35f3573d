"""The one place the bookings service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from wayfare.kit.auth.remote import remote_verifier
from wayfare.kit.bus import EventBus
from wayfare.kit.db import ping
from wayfare.kit.resources import migrate_service, open_resources
from wayfare.kit.saga import SagaRunner
from wayfare.kit.service import create_service
from wayfare.kit.settings import Settings
from wayfare.services.bookings.api import router
from wayfare.services.bookings.handlers import Trips
from wayfare.services.bookings.inventory import InventoryClient
from wayfare.services.bookings.trip import Inventories, definitions

__all__ = ["NAME", "create_app", "migrate"]

NAME = "bookings"
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> None:
    await migrate_service(settings, NAME, MIGRATIONS)


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The bookings service; `bus` is shared when several services run in one process."""
    token = settings.service_token.get_secret_value() if settings.service_token else ""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, NAME, bus=bus) as resources:
            inventories = Inventories(
                hotels=InventoryClient(resources.http, settings.upstreams.get("hotels", []), token),
                flights=InventoryClient(
                    resources.http, settings.upstreams.get("flights", []), token
                ),
            )
            runner = SagaRunner(resources.uow, definitions(inventories), lease=settings.saga_lease)
            # Unfinished sagas (a crash, a replica gone) resume from the recovery loop.
            await runner.start()
            app.state.engine = resources.engine
            app.state.trips = Trips(
                uow=resources.uow,
                runner=runner,
                max_pending=settings.max_pending_bookings,
                wait=settings.booking_wait,
            )
            app.state.verifier = remote_verifier(settings, resources.http)
            try:
                yield
            finally:
                await runner.close()

    async def database(app: FastAPI) -> None:
        await ping(app.state.engine)

    return create_service(
        NAME,
        routers=[router],
        lifespan=lifespan,
        readiness=[database],
        max_body_bytes=settings.max_body_bytes,
    )
