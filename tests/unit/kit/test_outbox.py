"""The outbox publishes exactly what was committed; the inbox applies each event once.

Run on SQLite and on a real PostgreSQL (where concurrent relays must not double-publish).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.bus import Event, MemoryBus
from wayfare.kit.db import UnitOfWork, create_engine
from wayfare.kit.inbox import first_delivery, inbox_table
from wayfare.kit.outbox import OutboxRelay, outbox_table, record
from wayfare.kit.settings import Settings
from wayfare.kit.testing.servers import PostgresServer


async def _engine_with_tables(url: str) -> AsyncEngine:
    engine = create_engine(url, Settings())
    metadata = MetaData()
    outbox_table(metadata)
    inbox_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"outbox_{uuid.uuid4().hex[:12]}")
    engine = await _engine_with_tables(url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pg_engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = await _engine_with_tables(postgres.create_database(f"relays_{uuid.uuid4().hex[:12]}"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as bus:
        yield bus


async def collect(bus: MemoryBus, queue: str = "seen") -> list[Event]:
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    await bus.subscribe(queue, ["#"], handler)
    return seen


async def wait_for(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def an_event(n: int = 0) -> Event:
    return Event.new(type="thing.happened", source="tests", data={"n": n}, subject=str(n))


async def test_a_committed_event_is_published_at_once(engine: AsyncEngine, bus: MemoryBus) -> None:
    seen = await collect(bus)
    relay = OutboxRelay(engine, bus, sweep_interval=60)  # only the commit hook can wake it
    await relay.start()
    try:
        uow = UnitOfWork(engine, on_commit=relay.after_commit)
        event = an_event()
        async with uow.begin() as session:
            await record(session, event)
        await wait_for(lambda: len(seen) == 1, within=2)
        assert seen[0] == event
        assert await relay.pending() == 0
    finally:
        await relay.close()


async def test_a_rolled_back_transaction_publishes_nothing(
    engine: AsyncEngine, bus: MemoryBus
) -> None:
    seen = await collect(bus)
    relay = OutboxRelay(engine, bus)
    uow = UnitOfWork(engine, on_commit=relay.after_commit)

    async def change_that_fails() -> None:
        async with uow.begin() as session:
            await record(session, an_event())
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await relay.pending() == 0
    assert await relay.drain() == 0
    await asyncio.sleep(0.05)
    assert seen == []


async def test_events_left_by_a_crash_are_published_by_the_sweep(
    engine: AsyncEngine, bus: MemoryBus
) -> None:
    seen = await collect(bus)
    uow = UnitOfWork(engine)  # no relay: as if the process died right after commit
    events = [an_event(i) for i in range(25)]
    async with uow.begin() as session:
        for event in events:
            await record(session, event)
    relay = OutboxRelay(engine, bus, sweep_interval=0.05, batch_size=10)
    assert await relay.pending() == 25
    await relay.start()
    try:
        await wait_for(lambda: len(seen) == 25)
        assert [e.id for e in seen] == [e.id for e in events], "published out of commit order"
        assert await relay.pending() == 0
    finally:
        await relay.close()


async def test_concurrent_relays_on_postgres_publish_each_row_once(
    pg_engine: AsyncEngine, bus: MemoryBus
) -> None:
    engine = pg_engine  # SQLite has one writer at a time; SKIP LOCKED is PostgreSQL's
    seen = await collect(bus)
    uow = UnitOfWork(engine)
    async with uow.begin() as session:
        for i in range(2000):
            await record(session, an_event(i))
    relays = [OutboxRelay(engine, bus, batch_size=50) for _ in range(4)]
    published = await asyncio.gather(*(relay.drain() for relay in relays))
    await wait_for(lambda: len(seen) >= 2000)
    await asyncio.sleep(0.05)
    counts = Counter(event.id for event in seen)
    assert sum(published) == 2000
    assert len(counts) == 2000
    assert max(counts.values()) == 1, "a row was published twice"
    assert sum(1 for n in published if n > 0) > 1, "the relays did not actually run side by side"


async def test_published_rows_are_pruned_after_the_retention(
    engine: AsyncEngine, bus: MemoryBus
) -> None:
    uow = UnitOfWork(engine)
    async with uow.begin() as session:
        await record(session, an_event())
    relay = OutboxRelay(engine, bus, retention=timedelta(0))
    assert await relay.prune() == 0, "an unpublished row must never be pruned"
    await relay.drain()
    await asyncio.sleep(0.01)
    assert await relay.prune() == 1
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one() == 0


async def test_the_inbox_applies_an_event_once(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine)
    event_id = str(uuid.uuid4())
    async with uow.begin() as session:
        assert await first_delivery(session, "notifications", event_id)
    async with uow.begin() as session:
        assert not await first_delivery(session, "notifications", event_id)
        # Another consumer group keeps its own memory.
        assert await first_delivery(session, "audit", event_id)


async def test_a_rolled_back_effect_forgets_the_delivery_too(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine)
    event_id = str(uuid.uuid4())

    async def effect_that_fails() -> None:
        async with uow.begin() as session:
            assert await first_delivery(session, "notifications", event_id)
            raise RuntimeError("the effect failed")

    with pytest.raises(RuntimeError):
        await effect_that_fails()
    async with uow.begin() as session:
        assert await first_delivery(session, "notifications", event_id), "redelivery was lost"
