"""The event bus on RabbitMQ, through aio-pika's robust connection.

Topology, all durable:

- `wayfare.events`, a topic exchange; the routing key is the event type. Its
  `alternate-exchange` is `wayfare.unroutable`, a fanout exchange bound to the quorum
  queue `wayfare.unroutable`, so an event no queue is bound for is kept for an operator
  (`AmqpBus.unroutable()`) instead of being dropped silently by the broker.
- one quorum queue per consumer group, with `x-delivery-limit` and the dead-letter
  exchange `wayfare.events.dlx` (direct), which routes on the queue's name to
  `<queue>.dlq`.
- retry queues `<queue>.retry.<ms>ms`, one per backoff delay, whose queue-wide TTL
  dead-letters each copy back to `<queue>` through the default exchange.
- every queue is a quorum queue; those that dead-letter do it `at-least-once`.

A handler that raises does not hold its message: the consumer republishes a copy with
`x-wayfare-attempt` raised by one to the retry queue of that attempt's delay (or, past
`max_attempts`, to the dead-letter exchange with `x-wayfare-error`), waits for the
confirm, and only then acks the original. A crash in between means a duplicate, never a
loss. The broker's own `x-delivery-limit` is a backstop for messages whose consumer
dies while holding them; those are dead-lettered by the broker with an `x-death` header.
`event.attempt` is `x-wayfare-attempt` plus the queue's `x-delivery-count` of such returns.

`connect_robust` reopens the connection and channels after a broker restart and
re-declares queues, bindings, QoS and consumers; publishes wait for the channel to be
restored, up to `publish_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
    HeadersType,
)

from wayfare.kit.bus._backoff import Backoff
from wayfare.kit.bus._consuming import check_subscription, describe, next_batch
from wayfare.kit.bus.envelope import Event, MalformedEvent
from wayfare.kit.bus.port import BatchHandler, DeadLetter, Handler, dead_letter_queue

__all__ = [
    "ATTEMPT_HEADER",
    "DEAD_LETTER_EXCHANGE",
    "DELIVERY_LIMIT",
    "ERROR_HEADER",
    "EXCHANGE",
    "UNROUTABLE",
    "AmqpBus",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

EXCHANGE = "wayfare.events"
DEAD_LETTER_EXCHANGE = "wayfare.events.dlx"
UNROUTABLE = "wayfare.unroutable"
ATTEMPT_HEADER = "x-wayfare-attempt"
ERROR_HEADER = "x-wayfare-error"
ROUTING_KEY_HEADER = "x-wayfare-routing-key"
CONTENT_TYPE = "application/cloudevents+json"
# Fixed rather than derived from max_attempts: queue arguments must never change once
# declared, and this only catches consumers that die while holding a message.
DELIVERY_LIMIT = 20

_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


class AmqpBus:
    """An `EventBus` on RabbitMQ; nothing touches the network before `start()`."""

    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        startup_timeout: float = 30.0,
    ) -> None:
        self._url = url
        self._startup_timeout = startup_timeout
        self._backoff = backoff or Backoff()
        self._reconnect_interval = reconnect_interval
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._events: AbstractExchange | None = None
        self._dead_letters: AbstractExchange | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._connection is not None:
            raise RuntimeError("the bus is already started")
        self._connection = await self._first_connection()
        try:
            await self._declare_topology(self._connection)
        except BaseException:
            await self.close()
            raise

    async def _first_connection(self) -> AbstractRobustConnection:
        """Wait out a broker that is briefly away at start (a restart, a deploy in progress);
        past `startup_timeout` give up, and let the process supervisor restart us."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout
        delay = 0.5
        while True:
            try:
                return await aio_pika.connect_robust(
                    self._url, reconnect_interval=self._reconnect_interval
                )
            except ConnectionError as exc:  # aiormq's connection errors are ConnectionErrors
                if loop.time() + delay > deadline:
                    raise
                log.warning("broker unreachable at start (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _declare_topology(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        unroutable = await self._channel.declare_exchange(
            UNROUTABLE, ExchangeType.FANOUT, durable=True
        )
        unroutable_queue = await self._channel.declare_queue(
            UNROUTABLE, durable=True, arguments=_QUORUM
        )
        await unroutable_queue.bind(unroutable)
        self._events = await self._channel.declare_exchange(
            EXCHANGE, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": UNROUTABLE}
        )
        self._dead_letters = await self._channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True
        )

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._events = self._dead_letters = None

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
        await self.publish_raw(event.type, event.to_json(), message_id=event.id)

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish all concurrently; raise the first failure once every confirm is in."""
        if not events:
            return
        channel = self._require(self._channel)
        exchange = self._require(self._events)
        # One deadline and one readiness check for the lot rather than one per event (the
        # publishes start together, so their deadlines would coincide anyway): a timer
        # per message cost as much CPU as a tenth of the publish itself.
        async with asyncio.timeout(self._publish_timeout):
            await channel.ready()
            results = await asyncio.gather(
                *(
                    exchange.publish(
                        _message(event.to_json(), {}, event.id), event.type, mandatory=True
                    )
                    for event in events
                ),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def publish_raw(
        self, routing_key: str, body: bytes, *, message_id: str | None = None
    ) -> None:
        await self._send(self._require(self._events), routing_key, body, {}, message_id)

    async def declare(self, queue: str, patterns: Sequence[str], *, max_attempts: int = 5) -> None:
        amqp_queue = await self._declare(queue, patterns, 1, max_attempts)
        await amqp_queue.channel.close()

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

        async def handle(message: AbstractIncomingMessage) -> None:
            event = await self._open(queue, message)
            if event is not None:
                try:
                    await handler(event)
                except Exception as exc:
                    log.warning("event handler failed on %s", queue, exc_info=exc)
                    await self._retry(queue, message, event.attempt, describe(exc), max_attempts)
            await message.ack()

        amqp_queue = await self._declare(queue, patterns, prefetch, max_attempts)
        await amqp_queue.consume(self._guarded(queue, handle))

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
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def receive(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        async def handle(batch: list[AbstractIncomingMessage]) -> None:
            # Decoded in line, not one task per message: only a malformed body needs I/O.
            pairs: list[tuple[AbstractIncomingMessage, Event]] = []
            malformed = []
            for message in batch:
                attempt = _attempt(message)
                try:
                    pairs.append((message, _decode(message.body, attempt)))
                except MalformedEvent as exc:
                    malformed.append(self._dead_letter(queue, message, attempt, describe(exc)))
            if malformed:
                await asyncio.gather(*malformed)
            if pairs:
                try:
                    await handler([event for _, event in pairs])
                except Exception as exc:
                    log.warning("batch handler failed on %s", queue, exc_info=exc)
                    error = describe(exc)
                    await asyncio.gather(
                        *(self._retry(queue, m, e.attempt, error, max_attempts) for m, e in pairs)
                    )
            # Deliveries from before a reconnect belong to a dead channel (the broker will
            # redeliver them): one multiple-ack per channel, each failing on its own.
            last_per_channel = {id(message.channel): message for message in batch}
            for message in last_per_channel.values():
                try:
                    await message.ack(multiple=True)
                except Exception as exc:
                    log.warning("could not ack a batch on %s: %s", queue, describe(exc))

        async def consume() -> None:
            guarded = self._guarded(queue, handle)
            while True:
                await guarded(await next_batch(inbox, max_batch, max_wait))

        # Twice the batch in flight: the next batch streams in while the handler writes this
        # one, and while the broker settles its ack. With exactly one batch the consumer
        # sat idle for both. The multiple-ack stays exact: a batch is acked through its own
        # last delivery tag, and later deliveries have higher ones.
        amqp_queue = await self._declare(queue, patterns, 2 * max_batch, max_attempts)
        task = asyncio.create_task(consume())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await amqp_queue.consume(receive)

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        return await self._peek(dead_letter_queue(queue), limit, _dead_letter_from)

    async def unroutable(self, *, limit: int = 1000) -> list[DeadLetter]:
        return await self._peek(UNROUTABLE, limit, _unroutable_from)

    def _require(self, value: T | None) -> T:
        if value is None:
            raise RuntimeError("the bus is not started")
        return value

    async def _send(
        self,
        exchange: AbstractExchange,
        routing_key: str,
        body: bytes,
        headers: HeadersType,
        message_id: str | None = None,
    ) -> None:
        channel = self._require(self._channel)
        message = _message(body, headers, message_id)
        async with asyncio.timeout(self._publish_timeout):
            await channel.ready()
            await exchange.publish(message, routing_key, mandatory=True)

    async def _declare(
        self, queue: str, patterns: Sequence[str], prefetch: int, max_attempts: int
    ) -> AbstractQueue:
        """Declare the queue, its DLQ and retry queues on a channel of its own (own QoS)."""
        connection = self._require(self._connection)
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            dlq = await channel.declare_queue(
                dead_letter_queue(queue), durable=True, arguments=_QUORUM
            )
            await dlq.bind(DEAD_LETTER_EXCHANGE, routing_key=queue)
            for delay_ms in sorted({self._delay_ms(n) for n in range(1, max_attempts)}):
                await channel.declare_queue(
                    _retry_queue(queue, delay_ms),
                    durable=True,
                    arguments={**_dead_lettering("", queue), "x-message-ttl": delay_ms},
                )
            amqp_queue = await channel.declare_queue(
                queue,
                durable=True,
                arguments={
                    **_dead_lettering(DEAD_LETTER_EXCHANGE, queue),
                    "x-delivery-limit": DELIVERY_LIMIT,
                },
            )
            for pattern in patterns:
                await amqp_queue.bind(EXCHANGE, routing_key=pattern)
        except BaseException:
            # Otherwise the robust channel would keep re-declaring what the broker refused.
            await channel.close()
            raise
        return amqp_queue

    def _delay_ms(self, failed_attempt: int) -> int:
        return max(1, round(self._backoff.delay(failed_attempt) * 1000))

    def _guarded(
        self, queue: str, handle: Callable[[T], Awaitable[None]]
    ) -> Callable[[T], Awaitable[None]]:
        """Log a failure to settle a delivery (the broker redelivers what was not acked)."""

        async def guarded(delivery: T) -> None:
            try:
                await handle(delivery)
            except Exception as exc:
                log.warning("could not settle a delivery on %s: %s", queue, describe(exc))

        return guarded

    async def _open(self, queue: str, message: AbstractIncomingMessage) -> Event | None:
        """The event with its attempt number, or None once a malformed body is dead-lettered."""
        attempt = _attempt(message)
        try:
            return _decode(message.body, attempt)
        except MalformedEvent as exc:
            await self._dead_letter(queue, message, attempt, describe(exc))
            return None

    async def _retry(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        attempt: int,
        error: str,
        max_attempts: int,
    ) -> None:
        if attempt >= max_attempts:
            await self._dead_letter(queue, message, attempt, error)
            return
        # A copy parked in a fixed-TTL queue frees the consumer's slot at once, where
        # sleep-then-nack would hold it, and per-message TTLs would queue behind each other.
        channel = self._require(self._channel)
        headers: HeadersType = {
            ATTEMPT_HEADER: attempt + 1,
            ROUTING_KEY_HEADER: _routing_key(message),
        }
        retry_queue = _retry_queue(queue, self._delay_ms(attempt))
        await self._send(channel.default_exchange, retry_queue, message.body, headers)

    async def _dead_letter(
        self, queue: str, message: AbstractIncomingMessage, attempt: int, error: str
    ) -> None:
        log.error("dead-lettering a message of %s: %s", queue, error)
        headers: HeadersType = {
            ATTEMPT_HEADER: attempt,
            ERROR_HEADER: error,
            ROUTING_KEY_HEADER: _routing_key(message),
        }
        await self._send(self._require(self._dead_letters), queue, message.body, headers)

    async def _peek(
        self,
        queue: str,
        limit: int,
        convert: Callable[[AbstractIncomingMessage], DeadLetter],
    ) -> list[DeadLetter]:
        """Read up to `limit` messages unacked; closing the channel puts them all back."""
        connection = self._require(self._connection)
        found: list[DeadLetter] = []
        async with connection.channel(publisher_confirms=False) as channel:
            amqp_queue = await channel.declare_queue(queue, durable=True, arguments=_QUORUM)
            while len(found) < limit:
                message = await amqp_queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                found.append(convert(message))
        return found


def _dead_lettering(exchange: str, routing_key: str) -> dict[str, Any]:
    return {
        **_QUORUM,
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
        # Keep a message until its new queue has confirmed it; needs reject-publish.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def _message(body: bytes, headers: HeadersType, message_id: str | None) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=CONTENT_TYPE,
        message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _decode(body: bytes, attempt: int) -> Event:
    event = Event.from_json(body)
    # A copy (validated again) only for a redelivery: from_json already says attempt 1.
    return event if event.attempt == attempt else event.with_attempt(attempt)


def _retry_queue(queue: str, delay_ms: int) -> str:
    return f"{queue}.retry.{delay_ms}ms"


def _header_int(headers: HeadersType, key: str, default: int) -> int:
    value = headers.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _header_text(headers: HeadersType, key: str) -> str | None:
    value = headers.get(key)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _attempt(message: AbstractIncomingMessage) -> int:
    # The quorum queue counts returns (a consumer died holding it) in x-delivery-count.
    headers = message.headers or {}
    return _header_int(headers, ATTEMPT_HEADER, 1) + _header_int(headers, "x-delivery-count", 0)


def _routing_key(message: AbstractIncomingMessage) -> str:
    return _header_text(message.headers or {}, ROUTING_KEY_HEADER) or message.routing_key or ""


def _death_reason(headers: HeadersType) -> str | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = _header_text(deaths[0], "reason")
        return None if reason is None else f"dead-lettered by the broker: {reason}"
    return None


def _dead_letter_from(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    return DeadLetter(
        body=message.body,
        routing_key=_routing_key(message),
        error=_header_text(headers, ERROR_HEADER) or _death_reason(headers) or "unknown",
        attempts=_header_int(headers, ATTEMPT_HEADER, 1),
    )


def _unroutable_from(message: AbstractIncomingMessage) -> DeadLetter:
    return DeadLetter(message.body, message.routing_key or "", "unroutable", attempts=0)
