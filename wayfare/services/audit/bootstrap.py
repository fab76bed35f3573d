"""The one place the audit service's adapters are chosen and wired."""

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
from wayfare.services.audit.api import router
from wayfare.services.audit.ingest import ingest

__all__ = ["NAME", "QUEUE", "create_app", "migrate"]

NAME = "audit"
QUEUE = "audit"
PATTERNS = ["#"]
MIGRATIONS = Path(__file__).parent / "migrations"
# Database outages are retried inside `ingest`; only events that fail on their own
# (a value the log cannot store) count attempts towards the dead-letter queue.
MAX_ATTEMPTS = 10


async def migrate(settings: Settings) -> None:
    await migrate_service(settings, NAME, MIGRATIONS)


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The audit service; `bus` is shared when several services run in one process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Audit only consumes; it records no events of its own.
        async with open_resources(settings, NAME, bus=bus, outbox=False) as resources:
            engine = resources.engine

            async def write(batch: list[Event]) -> None:
                await ingest(engine, batch)

            # Every event, in batches; an outage of the database holds the batch, unacked.
            await resources.bus.subscribe_batch(
                QUEUE,
                PATTERNS,
                write,
                max_batch=settings.audit_batch_size,
                max_wait=settings.audit_batch_wait,
                max_attempts=MAX_ATTEMPTS,
            )
            app.state.engine = engine
            app.state.verifier = remote_verifier(settings, resources.http)
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
