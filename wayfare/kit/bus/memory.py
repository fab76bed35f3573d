"""The in-process event bus: RabbitMQ's semantics, for embedded mode and fast tests.

Topic routing with one copy per queue, competing consumers on a queue, redelivery after
a backoff with the attempt counted, dead-lettering, batches, and a list of unroutable
messages standing in for the `wayfare.unroutable` queue. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from wayfare.kit.bus._backoff import Backoff
from wayfare.kit.bus._consuming import check_subscription, describe, next_batch
from wayfare.kit.bus.envelope import Event, MalformedEvent
from wayfare.kit.bus.port import BatchHandler, DeadLetter, Handler

__all__ = ["MemoryBus", "topic_matches"]

log = logging.getLogger(__name__)

UNROUTABLE_KEPT = 10_000


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: `*` is exactly one word, `#` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


@dataclass(frozen=True, slots=True)
class _Message:
    body: bytes
    routing_key: str
    attempt: int = 1


@dataclass(slots=True)
class _Queue:
    name: str
    patterns: set[str] = field(default_factory=set)
    ready: asyncio.Queue[_Message] = field(default_factory=asyncio.Queue)
    dead: list[DeadLetter] = field(default_factory=list)


class MemoryBus:
    """An `EventBus` in this process; `publish_raw` lets tests inject arbitrary bytes."""

    def __init__(self, *, backoff: Backoff | None = None) -> None:
        self._backoff = backoff or Backoff()
        self._queues: dict[str, _Queue] = {}
        # Bounded: in a long-lived embedded process nobody may ever read these.
        self._unroutable: deque[DeadLetter] = deque(maxlen=UNROUTABLE_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._started = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish(self, event: Event) -> None:
        await self.publish_raw(event.type, event.to_json())

    async def publish_many(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.publish(event)

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        self._check_started()
        targets = [
            queue
            for queue in self._queues.values()
            if any(topic_matches(pattern, routing_key) for pattern in queue.patterns)
        ]
        if not targets:
            self._unroutable.append(DeadLetter(body, routing_key, "unroutable", attempts=0))
        for queue in targets:
            queue.ready.put_nowait(_Message(body, routing_key))

    async def declare(self, queue: str, patterns: Sequence[str], *, max_attempts: int = 5) -> None:
        self._bind(queue, patterns)

    async def subscribe(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 32,
        max_attempts: int = 5,
    ) -> None:
        check_subscription(queue, patterns, max_attempts=max_attempts, window=prefetch)
        bound = self._bind(queue, patterns)
        slots = asyncio.Semaphore(prefetch)

        async def handle(message: _Message) -> None:
            try:
                event = self._open(bound, message)
                if event is not None:
                    try:
                        await handler(event)
                    except Exception as exc:
                        self._failed(bound, [message], exc, max_attempts)
            finally:
                slots.release()

        async def consume() -> None:
            while True:
                await slots.acquire()
                self._spawn(handle(await bound.ready.get()))

        self._spawn(consume())

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
        check_subscription(queue, patterns, max_attempts=max_attempts, window=max_batch)
        bound = self._bind(queue, patterns)

        async def consume() -> None:
            while True:
                batch = await next_batch(bound.ready, max_batch, max_wait)
                opened = [(m, e) for m in batch if (e := self._open(bound, m)) is not None]
                if not opened:
                    continue
                try:
                    await handler([event for _, event in opened])
                except Exception as exc:
                    self._failed(bound, [message for message, _ in opened], exc, max_attempts)

        self._spawn(consume())

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        bound = self._queues.get(queue)
        return [] if bound is None else bound.dead[:limit]

    async def unroutable(self, *, limit: int = 1000) -> list[DeadLetter]:
        return list(itertools.islice(self._unroutable, limit))

    def _check_started(self) -> None:
        if not self._started:
            raise RuntimeError("the bus is not started")

    def _bind(self, queue: str, patterns: Sequence[str]) -> _Queue:
        self._check_started()
        bound = self._queues.setdefault(queue, _Queue(queue))
        bound.patterns.update(patterns)
        return bound

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open(self, queue: _Queue, message: _Message) -> Event | None:
        """The event with its attempt number, or None once a malformed body is dead-lettered."""
        try:
            return Event.from_json(message.body).with_attempt(message.attempt)
        except MalformedEvent as exc:
            queue.dead.append(
                DeadLetter(message.body, message.routing_key, describe(exc), message.attempt)
            )
            return None

    def _failed(
        self, queue: _Queue, messages: list[_Message], exc: Exception, max_attempts: int
    ) -> None:
        log.warning("event handler failed on %s", queue.name, exc_info=exc)
        for message in messages:
            if message.attempt >= max_attempts:
                queue.dead.append(
                    DeadLetter(message.body, message.routing_key, describe(exc), message.attempt)
                )
            else:
                self._spawn(self._redeliver(queue, message))

    async def _redeliver(self, queue: _Queue, message: _Message) -> None:
        await asyncio.sleep(self._backoff.delay(message.attempt))
        queue.ready.put_nowait(dataclasses.replace(message, attempt=message.attempt + 1))
