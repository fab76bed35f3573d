"""Crashes and outages lose no event and duplicate none: real processes, PostgreSQL, RabbitMQ.

Each test has its own database and vhost; services are `wayfare serve` subprocesses that
are SIGKILLed, and the outcome is counted in SQL (`audit.events`, `users.outbox`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from tests.e2e.events_tools import (
    Deployment,
    Registration,
    app_stopped,
    audit_counts,
    audit_log_locked,
    audited_ids,
    blocked_writers,
    deployment,
    in_memory,
    pending_in_outbox,
    postgres_stopped,
    publish_in_chunks,
    register,
    sample_events,
    user_created_per_subject,
    wait_for,
)
from wayfare.kit.bus import AmqpBus
from wayfare.kit.bus.amqp import EXCHANGE
from wayfare.kit.testing.servers import PostgresServer, RabbitMQServer

pytestmark = pytest.mark.servers

AUDIT_QUEUE = "audit"
BROKER_OUTAGE = 3.0  # seconds: several relay sweeps and reconnect attempts
DATABASE_OUTAGE = 5.0  # seconds: many ingest retries, each batch held unacked meanwhile


@pytest.fixture
async def system(
    tmp_path: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer
) -> AsyncIterator[Deployment]:
    async with deployment(tmp_path, postgres, rabbitmq) as running:
        yield running


@pytest.fixture
async def bus(system: Deployment) -> AsyncIterator[AmqpBus]:
    """The test's own publisher on the system's vhost."""
    async with AmqpBus(system.broker_url) as amqp:
        yield amqp


async def test_events_committed_before_the_publisher_is_killed_go_out_after_its_restart(
    system: Deployment, rabbitmq: RabbitMQServer
) -> None:
    registered = 20
    audit, users = await asyncio.gather(system.start("audit"), system.start("users"))
    async with httpx.AsyncClient(timeout=30) as client:
        async with app_stopped(rabbitmq):
            results = [await register(client, users.url) for _ in range(registered)]
            assert [r.status for r in results] == [201] * registered
            # Committed with the users, and unpublishable: the relay cannot reach a broker.
            assert await pending_in_outbox(system.engine) == registered
            users.kill()
            assert users.process.returncode == -signal.SIGKILL
        users = await system.start("users")

    user_ids = {r.user_id for r in results if r.user_id is not None}
    audited = await wait_for(
        lambda: user_created_per_subject(system.engine),
        lambda seen: user_ids <= seen.keys(),
        what=f"user.created of all {registered} users in the audit log",
        show=lambda seen: f"{len(user_ids - seen.keys())} missing",
        logs=system.logs,
    )
    assert audited == dict.fromkeys(user_ids, 1)
    await wait_for(
        lambda: pending_in_outbox(system.engine),
        lambda pending: pending == 0,
        what="users.outbox drained",
        logs=system.logs,
    )
    assert audit.alive, audit.logs()
    assert users.alive, users.logs()


async def test_a_consumer_killed_mid_batch_ingests_every_event_exactly_once_after_restart(
    system: Deployment, bus: AmqpBus
) -> None:
    backlog, stream = sample_events(10_000), sample_events(10_000)
    published = [*backlog, *stream]
    await publish_in_chunks(bus, backlog)
    audit = await system.start("audit")
    publishing = asyncio.create_task(publish_in_chunks(bus, stream))
    try:
        await wait_for(
            lambda: audit_counts(system.engine),
            lambda counts: counts[0] >= 4_000,
            what="4,000 events ingested before the kill",
        )
        # Held by the test, the table lock stops audit's next insert with its batch in hand.
        async with audit_log_locked(system.engine):
            await wait_for(
                lambda: blocked_writers(system.engine),
                lambda waiting: waiting >= 1,
                what="audit's insert of a batch blocked",
            )
            ingested_at_kill, _ = await audit_counts(system.engine)
            audit.kill()
        assert ingested_at_kill < len(published)
        audit = await system.start("audit")
    finally:
        await publishing

    counts = await wait_for(
        lambda: audit_counts(system.engine),
        lambda counts: counts[0] >= len(published),
        what=f"all {len(published)} events ingested (killed at {ingested_at_kill})",
        logs=system.logs,
    )
    assert counts == (len(published), len(published))
    assert await audited_ids(system.engine) == {event.id for event in published}
    assert await bus.dead_letters(AUDIT_QUEUE) == []
    assert audit.alive


async def test_a_database_outage_during_ingestion_loses_and_duplicates_nothing(
    system: Deployment, bus: AmqpBus, postgres: PostgresServer
) -> None:
    before, during = sample_events(4_000), sample_events(2_000)
    audit = await system.start("audit")
    publishing = asyncio.create_task(publish_in_chunks(bus, before))
    try:
        await wait_for(
            lambda: audit_counts(system.engine),
            lambda counts: counts[0] >= 1_000,
            what="1,000 events ingested before the outage",
            every=0.02,
        )
        async with postgres_stopped(postgres):
            await publishing
            await publish_in_chunks(bus, during)
            await asyncio.sleep(DATABASE_OUTAGE)
            assert audit.alive, f"audit died while the database was down\n{audit.logs()}"
    finally:
        await publishing

    published = [*before, *during]
    counts = await wait_for(
        lambda: audit_counts(system.engine),
        lambda counts: counts[0] >= len(published),
        what=f"all {len(published)} events ingested after the outage",
        logs=audit.logs,
    )
    assert counts == (len(published), len(published))
    assert await audited_ids(system.engine) == {event.id for event in published}
    assert await bus.dead_letters(AUDIT_QUEUE) == []
    assert audit.alive
    # The log is the one witness that audit did try to write while the database was away.
    assert "audit database unreachable" in audit.log.read_text(), audit.logs()


async def test_a_broker_restart_loses_no_registered_users_event_and_registration_goes_on(
    system: Deployment, rabbitmq: RabbitMQServer
) -> None:
    audit, users = await asyncio.gather(system.start("audit"), system.start("users"))
    results: list[Registration] = []
    finished = asyncio.Event()
    cap = 1_000

    async def registrar(client: httpx.AsyncClient) -> None:
        while not finished.is_set() and len(results) < cap:
            results.append(await register(client, users.url))

    def answered_since(moment: float) -> int:
        return sum(1 for r in results if r.status == 201 and r.sent_at >= moment)

    async with httpx.AsyncClient(timeout=60) as client:
        registrars = [asyncio.create_task(registrar(client)) for _ in range(4)]
        try:
            await wait_for(in_memory(lambda: answered_since(0)), lambda n: n >= 80, what="80 users")
            async with app_stopped(rabbitmq):
                stopped_at = time.monotonic()
                await wait_for(
                    in_memory(lambda: answered_since(stopped_at)),
                    lambda n: n >= 30,
                    what="30 registrations while the broker is stopped",
                )
                await asyncio.sleep(BROKER_OUTAGE - (time.monotonic() - stopped_at))
                restarting_at = time.monotonic()
            restarted_at = time.monotonic()
            await wait_for(
                in_memory(lambda: answered_since(restarted_at)),
                lambda n: n >= 50,
                what="50 registrations after the broker restart",
            )
        finally:
            finished.set()
            await asyncio.gather(*registrars)

    assert [r for r in results if r.status != 201] == []
    during_outage = [
        r for r in results if stopped_at <= r.sent_at and r.answered_at < restarting_at
    ]
    assert len(during_outage) >= 30
    user_ids = {r.user_id for r in results if r.user_id is not None}
    audited = await wait_for(
        lambda: user_created_per_subject(system.engine),
        lambda seen: user_ids <= seen.keys(),
        what=f"user.created of all {len(user_ids)} users in the audit log",
        show=lambda seen: f"{len(user_ids - seen.keys())} missing",
        logs=system.logs,
    )
    assert audited == dict.fromkeys(user_ids, 1)
    await wait_for(
        lambda: pending_in_outbox(system.engine),
        lambda pending: pending == 0,
        what="users.outbox drained",
        logs=system.logs,
    )
    assert audit.alive, audit.logs()
    assert users.alive, users.logs()


async def test_a_malformed_message_is_dead_lettered_and_later_events_are_still_ingested(
    system: Deployment, bus: AmqpBus
) -> None:
    audit = await system.start("audit")
    connection = await aio_pika.connect(system.broker_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(aio_pika.Message(b"not json"), "user.created", mandatory=True)
    after = sample_events(10)
    await bus.publish_many(after)

    await wait_for(
        lambda: audit_counts(system.engine),
        lambda counts: counts[0] >= len(after),
        what="the events published after the malformed one ingested",
    )
    dead = await wait_for(
        lambda: bus.dead_letters(AUDIT_QUEUE),
        lambda found: len(found) >= 1,
        what="the malformed message in audit.dlq",
    )
    assert [(d.body, d.routing_key) for d in dead] == [(b"not json", "user.created")]
    assert "not JSON" in dead[0].error
    assert await audited_ids(system.engine) == {event.id for event in after}
    assert audit.alive
