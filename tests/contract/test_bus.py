"""The event bus contract: every case runs against `MemoryBus` and a real RabbitMQ.

The broker is shared by the session, so each test names its queues and event types
under a fresh prefix.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from wayfare.kit.bus import AmqpBus, Backoff, DeadLetter, Event, EventBus, MemoryBus
from wayfare.kit.bus.amqp import DELIVERY_LIMIT
from wayfare.kit.testing.servers import RabbitMQServer

BACKOFF = Backoff(base=0.05, cap=0.2)
TIMEOUT = 5.0


class ContractBus(EventBus, Protocol):
    """The port plus what both adapters offer tests and operators."""

    async def publish_raw(self, routing_key: str, body: bytes) -> None: ...

    async def unroutable(self, *, limit: int = 1000) -> list[DeadLetter]: ...


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.servers)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[ContractBus]:
    adapter: ContractBus
    if request.param == "memory":
        adapter = MemoryBus(backoff=BACKOFF)
    else:
        rabbitmq: RabbitMQServer = request.getfixturevalue("rabbitmq")
        adapter = AmqpBus(rabbitmq.url, backoff=BACKOFF)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def ns() -> str:
    """A prefix for this test's queues and event types."""
    return f"t{uuid.uuid4().hex[:12]}"


def event(type_: str, **data: Any) -> Event:
    return Event.new(type=type_, source="/tests/contract", data=data)


async def eventually(condition: Callable[[], bool], within: float = TIMEOUT) -> None:
    """Poll until `condition` holds; time out after `within` seconds."""
    async with asyncio.timeout(within):
        # Polling on purpose: the condition is met by a broker, not by an event of ours.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def at_least(read: Callable[[], Awaitable[list[DeadLetter]]], count: int) -> list[DeadLetter]:
    """Poll `read` until it returns `count` messages or more."""
    async with asyncio.timeout(TIMEOUT):
        while len(found := await read()) < count:  # noqa: ASYNC110 - as in eventually()
            await asyncio.sleep(0.05)
    return found


class Recorder:
    """A handler that remembers what it was given, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]


async def test_star_matches_one_word_and_hash_any_number_of_words(
    bus: ContractBus, ns: str
) -> None:
    one_word, any_words = Recorder(), Recorder()
    await bus.subscribe(f"{ns}.users", [f"{ns}.user.*"], one_word)
    await bus.subscribe(f"{ns}.bookings", [f"{ns}.booking.#"], any_words)
    types = ["user.created", "user.profile.updated", "booking", "booking.confirmed"]
    types += ["booking.saga.step.done", "hotel.held", "user"]
    await bus.publish_many([event(f"{ns}.{t}") for t in types])
    # Sent after every other is confirmed, so it arrives last on each queue.
    await bus.publish(event(f"{ns}.user.end"))
    await bus.publish(event(f"{ns}.booking.end"))

    await eventually(lambda: f"{ns}.user.end" in one_word.types)
    await eventually(lambda: f"{ns}.booking.end" in any_words.types)

    assert one_word.types == [f"{ns}.user.created", f"{ns}.user.end"]
    assert sorted(any_words.types[:-1]) == [
        f"{ns}.{t}" for t in ["booking", "booking.confirmed", "booking.saga.step.done"]
    ]


async def test_every_bound_queue_gets_its_own_copy(bus: ContractBus, ns: str) -> None:
    audit, notifications = Recorder(), Recorder()
    await bus.subscribe(f"{ns}.audit", [f"{ns}.#"], audit)
    await bus.subscribe(f"{ns}.notifications", [f"{ns}.user.*"], notifications)
    published = [event(f"{ns}.user.created", n=n) for n in range(5)]
    await bus.publish_many(published)
    await bus.publish(event(f"{ns}.user.end"))

    await eventually(lambda: f"{ns}.user.end" in audit.types)
    await eventually(lambda: f"{ns}.user.end" in notifications.types)

    for recorder in (audit, notifications):
        assert sorted(e.id for e in recorder.events[:-1]) == sorted(e.id for e in published)
        assert all(e.attempt == 1 for e in recorder.events)


async def test_a_declared_queue_keeps_events_until_its_consumer_starts(
    bus: ContractBus, ns: str
) -> None:
    await bus.declare(f"{ns}.late", [f"{ns}.#"])
    early = [event(f"{ns}.user.created", n=n) for n in range(3)]
    await bus.publish_many(early)
    late = Recorder()
    await bus.subscribe(f"{ns}.late", [f"{ns}.#"], late)
    await eventually(lambda: len(late.events) == 3)
    assert sorted(e.id for e in late.events) == sorted(e.id for e in early)


async def test_consumers_of_one_queue_share_its_events(bus: ContractBus, ns: str) -> None:
    first, second = Recorder(), Recorder()
    await bus.subscribe(f"{ns}.work", [f"{ns}.#"], first)
    await bus.subscribe(f"{ns}.work", [f"{ns}.#"], second)
    published = [event(f"{ns}.job.queued", n=n) for n in range(20)]
    await bus.publish_many(published)

    await eventually(lambda: len(first.events) + len(second.events) >= 20)
    await asyncio.sleep(0.1)  # room for a duplicate to show up

    handled = [e.id for e in first.events + second.events]
    assert sorted(handled) == sorted(e.id for e in published)


async def test_a_failing_handler_gets_the_event_again_after_a_backoff(
    bus: ContractBus, ns: str
) -> None:
    seen: list[tuple[int, float]] = []

    async def flaky(event: Event) -> None:
        seen.append((event.attempt, time.monotonic()))
        if event.attempt < 3:
            raise RuntimeError("downstream unavailable")

    await bus.subscribe(f"{ns}.flaky", [f"{ns}.#"], flaky, max_attempts=5)
    await bus.publish(event(f"{ns}.user.created"))

    await eventually(lambda: len(seen) >= 3)
    assert [attempt for attempt, _ in seen] == [1, 2, 3]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(seen)]
    assert gaps[0] >= BACKOFF.delay(1) * 0.9
    assert gaps[1] >= BACKOFF.delay(2) * 0.9
    assert await bus.dead_letters(f"{ns}.flaky") == []


async def test_a_poison_event_is_dead_lettered_and_never_holds_up_the_others(
    bus: ContractBus, ns: str
) -> None:
    handled: list[tuple[str, int]] = []

    async def handler(event: Event) -> None:
        handled.append((event.data["name"], event.attempt))
        if event.data["name"] == "poison":
            raise ValueError("no such hotel")

    # One delivery at a time: a poison message that blocked its slot would stall the rest.
    await bus.subscribe(f"{ns}.orders", [f"{ns}.#"], handler, prefetch=1, max_attempts=4)
    poison = event(f"{ns}.booking.requested", name="poison")
    good = [event(f"{ns}.booking.requested", name=f"good-{n}") for n in range(10)]
    await bus.publish(poison)
    await bus.publish_many(good)

    [dead] = await at_least(lambda: bus.dead_letters(f"{ns}.orders"), 1)

    assert dead.event == poison
    assert dead.routing_key == poison.type
    assert dead.attempts == 4
    assert "ValueError: no such hotel" in dead.error
    assert [attempt for name, attempt in handled if name == "poison"] == [1, 2, 3, 4]
    last_try = handled.index(("poison", 4))
    assert sorted(handled[:last_try]) == sorted(
        [("poison", 1), ("poison", 2), ("poison", 3)] + [(f"good-{n}", 1) for n in range(10)]
    )


async def test_a_malformed_body_is_dead_lettered_and_the_consumer_goes_on(
    bus: ContractBus, ns: str
) -> None:
    recorder = Recorder()
    await bus.subscribe(f"{ns}.audit", [f"{ns}.#"], recorder)
    await bus.publish_raw(f"{ns}.user.created", b"{not json")
    await bus.publish_raw(f"{ns}.user.created", b'{"specversion": "0.3"}')
    good = event(f"{ns}.user.created")
    await bus.publish(good)

    dead = await at_least(lambda: bus.dead_letters(f"{ns}.audit"), 2)
    await eventually(lambda: len(recorder.events) == 1)

    assert recorder.events == [good]
    assert sorted(d.body for d in dead) == [b'{"specversion": "0.3"}', b"{not json"]
    assert all(d.event is None and d.routing_key == f"{ns}.user.created" for d in dead)
    assert all(d.error.startswith("MalformedEvent") for d in dead)


async def test_an_event_no_queue_is_bound_for_is_kept_as_unroutable(
    bus: ContractBus, ns: str
) -> None:
    lost = event(f"{ns}.nobody.listens")
    await bus.publish(lost)

    unroutable = await bus.unroutable()

    assert lost in [message.event for message in unroutable]


async def test_a_batch_is_flushed_as_soon_as_it_is_full(bus: ContractBus, ns: str) -> None:
    batches: list[list[Event]] = []

    async def handler(batch: list[Event]) -> None:
        batches.append(batch)

    # A max_wait far beyond the test's timeout: only a full batch can be flushed in time.
    await bus.subscribe_batch(f"{ns}.audit", [f"{ns}.#"], handler, max_batch=10, max_wait=60)
    published = [event(f"{ns}.user.created", n=n) for n in range(25)]
    await bus.publish_many(published)

    await eventually(lambda: len(batches) >= 2)

    assert [len(batch) for batch in batches] == [10, 10]
    handled = [e.id for batch in batches for e in batch]
    assert len(set(handled)) == 20
    assert set(handled) <= {e.id for e in published}


async def test_a_partial_batch_is_flushed_after_max_wait(bus: ContractBus, ns: str) -> None:
    batches: list[tuple[float, list[Event]]] = []

    async def handler(batch: list[Event]) -> None:
        batches.append((time.monotonic(), batch))

    await bus.subscribe_batch(f"{ns}.audit", [f"{ns}.#"], handler, max_batch=100, max_wait=0.2)
    started = time.monotonic()
    published = [event(f"{ns}.user.created", n=n) for n in range(3)]
    await bus.publish_many(published)

    await eventually(lambda: len(batches) >= 1)

    [(flushed_at, batch)] = batches
    assert sorted(e.id for e in batch) == sorted(e.id for e in published)
    assert flushed_at - started >= 0.2 * 0.9


async def test_a_batch_whose_handler_raises_is_delivered_again_whole(
    bus: ContractBus, ns: str
) -> None:
    calls: list[list[Event]] = []

    async def handler(batch: list[Event]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("database unavailable")

    await bus.subscribe_batch(f"{ns}.audit", [f"{ns}.#"], handler, max_batch=5, max_wait=1.0)
    published = [event(f"{ns}.user.created", n=n) for n in range(5)]
    await bus.publish_many(published)

    await eventually(lambda: len({e.id for batch in calls[1:] for e in batch}) >= 5)

    failed, *retried = calls
    assert sorted(e.id for e in failed) == sorted(e.id for e in published)
    again = [e for batch in retried for e in batch]
    assert sorted(e.id for e in again) == sorted(e.id for e in published)
    assert all(e.attempt == 2 for e in again)
    assert await bus.dead_letters(f"{ns}.audit") == []


async def test_a_batch_that_keeps_failing_is_dead_lettered(bus: ContractBus, ns: str) -> None:
    async def handler(batch: list[Event]) -> None:
        raise RuntimeError("schema mismatch")

    await bus.subscribe_batch(
        f"{ns}.audit", [f"{ns}.#"], handler, max_batch=10, max_wait=0.05, max_attempts=2
    )
    published = [event(f"{ns}.user.created", n=n) for n in range(3)]
    await bus.publish_many(published)

    dead = await at_least(lambda: bus.dead_letters(f"{ns}.audit"), 3)

    assert sorted(d.event.id for d in dead if d.event) == sorted(e.id for e in published)
    assert all(d.attempts == 2 and "schema mismatch" in d.error for d in dead)


async def test_a_malformed_body_in_a_batch_is_dead_lettered_alone(
    bus: ContractBus, ns: str
) -> None:
    batches: list[list[Event]] = []

    async def handler(batch: list[Event]) -> None:
        batches.append(batch)

    await bus.subscribe_batch(f"{ns}.audit", [f"{ns}.#"], handler, max_batch=10, max_wait=0.05)
    good = event(f"{ns}.user.created")
    await bus.publish_raw(f"{ns}.user.created", b"\x00\x01")
    await bus.publish(good)

    [dead] = await at_least(lambda: bus.dead_letters(f"{ns}.audit"), 1)
    await eventually(lambda: len(batches) >= 1)

    assert dead.body == b"\x00\x01"
    assert [e for batch in batches for e in batch] == [good]


@pytest.mark.servers
async def test_consumers_resume_after_the_broker_restarts(
    rabbitmq: RabbitMQServer, ns: str
) -> None:
    single, batched = Recorder(), Recorder()

    async def batch_handler(batch: list[Event]) -> None:
        batched.events.extend(batch)

    bus = AmqpBus(rabbitmq.url, backoff=BACKOFF, reconnect_interval=0.2)
    await bus.start()
    try:
        await bus.subscribe(f"{ns}.single", [f"{ns}.#"], single)
        await bus.subscribe_batch(f"{ns}.batched", [f"{ns}.#"], batch_handler, max_wait=0.05)
        before = event(f"{ns}.user.created")
        await bus.publish(before)
        await eventually(lambda: len(single.events) == 1 and len(batched.events) == 1)

        await asyncio.to_thread(rabbitmq.stop_app)
        await asyncio.to_thread(rabbitmq.start_app)
        after = event(f"{ns}.user.updated")
        await bus.publish(after)  # waits for the connection to be restored

        await eventually(lambda: after in single.events and after in batched.events, 20)
        assert single.events == [before, after]
        assert batched.events == [before, after]
    finally:
        await bus.close()


@pytest.mark.servers
async def test_a_bus_started_while_the_broker_is_away_connects_when_it_is_back(
    rabbitmq: RabbitMQServer, ns: str
) -> None:
    await asyncio.to_thread(rabbitmq.stop_app)
    try:
        bus = AmqpBus(rabbitmq.url, backoff=BACKOFF, startup_timeout=60)
        starting = asyncio.create_task(bus.start())
        await asyncio.sleep(1.5)
        assert not starting.done(), "start must wait for the broker, not fail"
    finally:
        await asyncio.to_thread(rabbitmq.start_app)
    await asyncio.wait_for(starting, 60)
    try:
        seen = Recorder()
        await bus.subscribe(f"{ns}.late", [f"{ns}.#"], seen)
        published = event(f"{ns}.user.created")
        await bus.publish(published)
        await eventually(lambda: seen.events == [published])
    finally:
        await bus.close()


@pytest.mark.servers
async def test_a_message_returned_too_often_is_dead_lettered_by_the_broker(
    rabbitmq: RabbitMQServer, ns: str
) -> None:
    async with AmqpBus(rabbitmq.url) as bus:
        await bus.subscribe(f"{ns}.orders", [f"{ns}.#"], Recorder())
    poison = event(f"{ns}.booking.requested")
    returns = 0
    # A consumer that keeps giving the message back, as one crashing on it would.
    async with await aio_pika.connect(rabbitmq.url) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{ns}.orders", ensure=False)

        async def give_back(message: AbstractIncomingMessage) -> None:
            nonlocal returns
            returns += 1
            await message.nack(requeue=True)

        await queue.consume(give_back)
        async with AmqpBus(rabbitmq.url) as bus:
            await bus.publish(poison)
            [dead] = await at_least(lambda: bus.dead_letters(f"{ns}.orders"), 1)

    assert dead.event == poison
    assert "delivery_limit" in dead.error
    assert returns == DELIVERY_LIMIT + 1
