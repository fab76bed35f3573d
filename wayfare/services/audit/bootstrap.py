"""The one place the audit service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.auth.remote import remote_verifier
from wayfare.kit.bus import Event, EventBus, bus_for
from wayfare.kit.db import create_engine, ping, upgrade
from wayfare.kit.http import create_client_session
from wayfare.kit.service import create_service
from wayfare.kit.settings import Settings
from wayfare.services.audit.api import router
from wayfare.services.audit.ingest import ingest

__all__ = ["NAME", "QUEUE", "create_app", "migrate"]

NAME = "audit"
QUEUE = "audit"
MIGRATIONS = Path(__file__).parent / "migrations"


def _engine(settings: Settings) -> AsyncEngine:
    return create_engine(settings.service_database_url(NAME), settings, schema=NAME)


async def migrate(settings: Settings) -> None:
    engine = _engine(settings)
    try:
        await upgrade(engine, MIGRATIONS, schema=NAME)
    finally:
        await engine.dispose()


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The audit service; `bus` is shared when several services run in one process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = _engine(settings)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            session = create_client_session()
            stack.push_async_callback(session.close)
            events = bus
            if events is None:
                events = bus_for(settings.broker_url)
                await events.start()
                stack.push_async_callback(events.close)

            async def write(batch: list[Event]) -> None:
                await ingest(engine, batch)

            # Every event, in batches; an outage of the database holds the batch, unacked.
            await events.subscribe_batch(
                QUEUE,
                ["#"],
                write,
                max_batch=settings.audit_batch_size,
                max_wait=settings.audit_batch_wait,
            )
            app.state.engine = engine
            app.state.verifier = remote_verifier(settings, session)
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
