"""The event bus port: what services may ask of a broker, whichever adapter serves it.

Delivery is at least once. A handler that raises gets the event again after a backoff,
with `event.attempt` raised by one; after `max_attempts` failures, or at once when the
body is not a valid envelope, the message goes to the queue's dead-letter queue
(`<queue>.dlq`) with the error recorded, and the other messages keep flowing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from wayfare.kit.bus.envelope import Event, MalformedEvent

__all__ = ["BatchHandler", "DeadLetter", "EventBus", "Handler", "dead_letter_queue"]

Handler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[list[Event]], Awaitable[None]]


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message set aside for an operator: dead-lettered, or published with no route."""

    body: bytes
    routing_key: str
    error: str
    attempts: int

    @property
    def event(self) -> Event | None:
        """The envelope, or None when the body itself is what was wrong."""
        try:
            return Event.from_json(self.body)
        except MalformedEvent:
            return None


class EventBus(Protocol):
    """Publish and consume events; open in `start()` (or `async with`), release in `close()`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Return once the broker has accepted the event (a publisher confirm on AMQP)."""
        ...

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Send all, then await all the confirms together."""
        ...

    async def declare(self, queue: str, patterns: Sequence[str], *, max_attempts: int = 5) -> None:
        """Create the queue and its bindings now, so events published before its consumer
        starts wait for it (as they would in a deployed RabbitMQ)."""
        ...

    async def subscribe(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 32,
        max_attempts: int = 5,
    ) -> None:
        """Consume `queue` (one per consumer group) bound to topic `patterns` (`*`, `#`).

        Up to `prefetch` events are handled concurrently.
        """
        ...

    async def subscribe_batch(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 500,
        max_wait: float = 0.2,
        max_attempts: int = 5,
    ) -> None:
        """Hand over lists of events; a batch is acknowledged only when `handler` returns.

        A batch is flushed at `max_batch` events or `max_wait` seconds after its first;
        if the handler raises, every event of the batch is retried as above.
        """
        ...

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Read, without removing them, the messages in `queue`'s dead-letter queue."""
        ...
