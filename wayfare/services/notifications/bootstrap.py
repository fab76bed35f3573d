"""The one place the notifications service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from wayfare.kit.auth.remote import remote_verifier
from wayfare.kit.bus import Event, EventBus
from wayfare.kit.db import ping
from wayfare.kit.resources import migrate_service, open_resources
from wayfare.kit.service import create_service
from wayfare.kit.settings import Settings
from wayfare.services.notifications.api import router
from wayfare.services.notifications.handlers import apply_event

__all__ = ["MIGRATIONS", "NAME", "PATTERNS", "QUEUE", "create_app", "migrate"]

NAME = "notifications"
QUEUE = "notifications"
PATTERNS = ["user.created", "booking.*"]
MIGRATIONS = Path(__file__).parent / "migrations"
# Unusable events are skipped, not raised, so only database errors count attempts: with
# the bus's backoff (capped at 10 s) ten attempts ride out about 20 s of outage.
MAX_ATTEMPTS = 10


async def migrate(settings: Settings) -> None:
    await migrate_service(settings, NAME, MIGRATIONS)


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The notifications service; `bus` is shared when several services run in one process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Notifications only consumes; it records no events of its own.
        async with open_resources(settings, NAME, bus=bus) as resources:
            uow = resources.uow
            app.state.engine = resources.engine
            app.state.uow = uow
            app.state.verifier = remote_verifier(settings, resources.http)

            async def notify(event: Event) -> None:
                await apply_event(uow, event)

            await resources.bus.subscribe(QUEUE, PATTERNS, notify, max_attempts=MAX_ATTEMPTS)
            yield

    async def database(app: FastAPI) -> None:
        await ping(app.state.engine)

    return create_service(
        NAME,
        routers=[router],
        lifespan=lifespan,
        readiness=[database],
        max_body_bytes=settings.max_body_bytes,
    )
