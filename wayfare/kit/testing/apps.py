"""A service served in-process for its tests, and the bus events it published.

For tests only: it imports httpx, a development dependency, so nothing in the running
product may import this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx
from starlette.applications import Starlette

from wayfare.kit.bus import Event, EventBus, MemoryBus
from wayfare.kit.settings import Settings

__all__ = ["InProcess", "Recorder", "ServiceFactory", "in_process", "serving"]

# Long enough for an in-memory bus on a loaded CI machine, short enough to fail fast.
WAIT_SECONDS = 5


class Recorder:
    """A bus handler that keeps the events it is given, and waits for the ones expected."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> None:
        """Return once `predicate(events)` holds; the bus delivers in the background."""
        async with asyncio.timeout(WAIT_SECONDS), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))


@asynccontextmanager
async def serving(
    app: Starlette, *, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client that calls it in-process, over ASGI.

    httpx's ASGI transport does not run the lifespan itself, so the engines, clients
    and background tasks the app starts there would otherwise be missing.
    """
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as client,
    ):
        yield client


class ServiceFactory(Protocol):
    """A service's `bootstrap.create_app`: any that builds a Starlette (FastAPI) app."""

    def __call__(self, settings: Settings, *, bus: EventBus | None = None) -> Starlette: ...


@dataclass(frozen=True)
class InProcess:
    """A service served in-process: its app, its memory bus, a client, what it published."""

    app: Starlette
    bus: MemoryBus
    client: httpx.AsyncClient
    recorder: Recorder

    @property
    def events(self) -> list[Event]:
        return self.recorder.events


@asynccontextmanager
async def in_process(
    create_app: ServiceFactory,
    settings: Settings,
    *,
    base_url: str,
    recording: Sequence[str] = (),
) -> AsyncIterator[InProcess]:
    """The service on its own `MemoryBus`, its lifespan running, until the block ends.

    The recorder keeps the events whose types match the `recording` topic patterns,
    subscribed before the app starts so that it misses none.
    """
    async with MemoryBus() as bus:
        recorder = Recorder()
        if recording:
            await bus.subscribe("recorder", recording, recorder)
        app = create_app(settings, bus=bus)
        async with serving(app, base_url=base_url) as client:
            yield InProcess(app, bus, client, recorder)
