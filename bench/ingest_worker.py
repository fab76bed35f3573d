"""The measured side of `bench/ingest.py`: one job per process, pinned by the caller.

    python -m bench.ingest_worker '{"job": "consume", ...}'

`bench/ingest.py` starts this under `taskset` on the client core, once per step, so
that every measurement starts in a fresh interpreter (no warm caches or garbage left
by the pre-fill) and so the servers' core sees only the servers. The job is one JSON
object on the command line; the result is one JSON object on the last line of stdout.
Only the draining / publishing itself is timed: connecting, declaring, pre-filling and
verifying happen outside the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.bus import AmqpBus, Event
from wayfare.kit.bus.amqp import CONTENT_TYPE, EXCHANGE
from wayfare.kit.db import create_engine, ping
from wayfare.kit.outbox import OutboxRelay
from wayfare.kit.settings import Settings
from wayfare.services.audit import bootstrap as audit_bootstrap
from wayfare.services.audit.ingest import ingest
from wayfare.services.users import bootstrap as users_bootstrap
from wayfare.services.users.models import outbox

__all__ = ["event_id", "main", "make_event"]

Job = dict[str, Any]
Result = dict[str, Any]


# --- events --------------------------------------------------------------------------------


def event_id(nonce: int, index: int) -> str:
    """UUID-shaped and checkable: the last 12 digits are the event's index in its run."""
    return f"{nonce:08x}-0000-4000-8000-{index:012d}"


def make_event(kind: str, nonce: int, index: int) -> Event:
    """A `user.created`-like event the size of the users service's, under `kind.`."""
    user = str(uuid.uuid4())
    return Event(
        id=event_id(nonce, index),
        source="users",
        type=f"{kind}.user.created",
        time=datetime.now(UTC),
        subject=user,
        traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
        data={
            "id": user,
            "email": f"traveller{index}@example.com",
            "name": f"Traveller {index}",
            "role": "traveller",
        },
    )


def make_events(kind: str, nonce: int, count: int, start: int = 0) -> list[Event]:
    return [make_event(kind, nonce, i) for i in range(start, start + count)]


# --- measuring -----------------------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds spent by everything on the machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK  # less idle and iowait


def tree_cpu(roots: set[int]) -> float:
    """CPU seconds of the processes `roots` and their children (PostgreSQL's backends),
    their reaped children included; all threads (RabbitMQ's schedulers) included."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry.name) in roots or int(fields[1]) in roots:
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


@dataclass
class Window:
    """Over the measured span: wall time, and the CPU time of this process, of the
    servers, and of everything else on the machine (other users' work: noise)."""

    server_pids: list[int]
    profile_path: str | None = None
    wall: float = 0.0
    cpu: float = 0.0
    servers: float = 0.0
    others: float = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        profiler = cProfile.Profile() if self.profile_path else None
        roots = set(self.server_pids)
        # As `wayfare serve` does once its server is up: what start-up built (connections,
        # pools, SQLAlchemy and aio-pika state) leaves the collector's sight.
        gc.collect()
        gc.freeze()
        servers0, machine0 = tree_cpu(roots), machine_busy()
        cpu0 = time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.disable()
            self.wall = time.perf_counter() - started
            self.cpu = time.process_time() - cpu0
            self.servers = tree_cpu(roots) - servers0
            self.others = max(0.0, machine_busy() - machine0 - self.cpu - self.servers)
            if profiler is not None and self.profile_path:
                profiler.dump_stats(self.profile_path)

    def result(self, count: int, **extra: Any) -> Result:
        return {
            "count": count,
            "seconds": self.wall,
            "rate": count / self.wall if self.wall > 0 else 0.0,
            "cpu_seconds": self.cpu,
            "server_cpu_seconds": self.servers,
            "other_cpu_seconds": self.others,
            "affinity": sorted(os.sched_getaffinity(0)),
            **extra,
        }


async def wait_for(done: asyncio.Event, seconds: float, progress: Callable[[], str]) -> None:
    try:
        async with asyncio.timeout(seconds):
            await done.wait()
    except TimeoutError:
        raise TimeoutError(f"not done within {seconds:g} s: {progress()}") from None


# --- broker helpers ------------------------------------------------------------------------


async def declare_like_the_bus(url: str, queue: str) -> None:
    """The queue, its DLQ, retry queues and binding, as the audit service's bus declares
    them (`AmqpBus.declare`), so that events published before its consumer starts wait."""
    async with AmqpBus(url) as bus:
        await bus.declare(queue, [f"{queue}.#"], max_attempts=audit_bootstrap.MAX_ATTEMPTS)


async def queue_depth(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in `queue` (unacked ones count once their consumer is gone)."""
    declared = await channel.declare_queue(queue, passive=True)
    result = declared.declaration_result
    return int(result.message_count or 0)


async def broker_check(url: str, queue: str, *, delete: bool) -> dict[str, int]:
    """What is left in the queue and its DLQ; deletes both when asked (frees the broker)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        left = {"left_in_queue": await queue_depth(channel, queue)}
        left["dead_lettered"] = await queue_depth(channel, f"{queue}.dlq")
        if delete:
            await channel.queue_delete(queue)
            await channel.queue_delete(f"{queue}.dlq")
        return left


# --- jobs ----------------------------------------------------------------------------------


async def job_prepare(job: Job) -> Result:
    await audit_bootstrap.migrate(Settings(database_url=job["audit_db"]))
    await users_bootstrap.migrate(Settings(database_url=job["users_db"]))
    return {"migrated": ["audit", "users"]}


async def job_fill(job: Job) -> Result:
    """Declare the queue as the bus does, then publish `count` events through the bus."""
    url, queue, count, chunk = job["amqp"], job["queue"], job["count"], job["chunk"]
    await declare_like_the_bus(url, queue)
    started = time.perf_counter()
    async with AmqpBus(url) as bus:
        for start in range(0, count, chunk):
            await bus.publish_many(
                make_events(queue, job["nonce"], min(chunk, count - start), start)
            )
    seconds = time.perf_counter() - started
    async with await aio_pika.connect(url) as connection:
        depth = await queue_depth(await connection.channel(), queue)
    if depth != count:
        raise RuntimeError(f"{queue} holds {depth} messages after publishing {count}")
    return {"count": count, "seconds": seconds, "rate": count / seconds, "depth": depth}


async def consume_bare(job: Job, window: Window) -> Result:
    """aio-pika alone: prefetch, a callback that counts, one multiple-ack every `ack_every`."""
    count, ack_every = job["count"], job["ack_every"]
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        seen += 1
        if seen % ack_every == 0 or seen == count:
            await message.ack(multiple=True)
        if seen == count:
            done.set()

    async with await aio_pika.connect(job["amqp"]) as connection:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=job["prefetch"])
        queue = await channel.get_queue(job["queue"], ensure=True)
        with window.measure():
            tag = await queue.consume(on_message)
            await wait_for(done, job["timeout"], lambda: f"{seen} of {count} received")
        await queue.cancel(tag)
    return window.result(seen)


async def consume_audit(job: Job, window: Window) -> Result:
    """The audit service's consumer: `AmqpBus` + `ingest` into PostgreSQL, as wired in
    `wayfare.services.audit.bootstrap`; `mode` picks batches, a batch of one, or a plain
    subscription with one `ingest` (one transaction) per event."""
    count, mode = job["count"], job["mode"]
    settings = Settings(database_url=job["audit_db"])
    engine = create_engine(job["audit_db"], settings, schema="audit")
    done = asyncio.Event()
    handled = 0
    inserted = 0
    batches = 0

    def tally(batch_size: int, new_rows: int) -> None:
        nonlocal handled, inserted, batches
        handled += batch_size
        inserted += new_rows
        batches += 1
        if handled >= count:
            done.set()

    in_ingest = 0.0  # summed over calls: beyond the wall time when calls overlap

    async def timed_ingest(batch: list[Event]) -> int:
        nonlocal in_ingest
        started = time.perf_counter()
        try:
            return await ingest(engine, batch)
        finally:
            in_ingest += time.perf_counter() - started

    async def write_batch(batch: list[Event]) -> None:
        tally(len(batch), await timed_ingest(batch))

    async def write_one(event: Event) -> None:
        tally(1, await timed_ingest([event]))

    try:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE events"))
        # A warm pool, as in a running service: the first connections are not timed.
        await asyncio.gather(*(ping(engine) for _ in range(settings.db_pool_size)))
        async with AmqpBus(job["amqp"]) as bus:
            with window.measure():
                if mode == "subscribe":
                    await bus.subscribe(
                        job["queue"],
                        [f"{job['queue']}.#"],
                        write_one,
                        prefetch=job["prefetch"],
                        max_attempts=audit_bootstrap.MAX_ATTEMPTS,
                    )
                else:
                    await bus.subscribe_batch(
                        job["queue"],
                        [f"{job['queue']}.#"],
                        write_batch,
                        max_batch=job["max_batch"],
                        max_wait=job["max_wait"],
                        max_attempts=audit_bootstrap.MAX_ATTEMPTS,
                    )
                await wait_for(done, job["timeout"], lambda: f"{handled} of {count} written")
            # The last batch's ack follows its handler; let it reach the broker first.
            await asyncio.sleep(0.5)
        rows = await count_rows(engine, job["nonce"], count)
    finally:
        await engine.dispose()
    left = await broker_check(job["amqp"], job["queue"], delete=True)
    return window.result(
        handled, inserted=inserted, batches=batches, inner_seconds=in_ingest, **rows, **left
    )


async def count_rows(engine: AsyncEngine, nonce: int, count: int) -> dict[str, Any]:
    """Exactly ids 0..count-1 of this run, once each, if all four figures agree."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id LIKE :p),"
                    " min(right(id, 12)), max(right(id, 12)) FROM events"
                ),
                {"p": event_id(nonce, 0)[:-12] + "%"},
            )
        ).one()
    rows, distinct, ours, low, high = row
    exact = rows == distinct == ours == count and low == f"{0:012d}" and high == f"{count - 1:012d}"
    return {"rows": rows, "distinct_ids": distinct, "rows_exact": exact}


async def job_consume(job: Job) -> Result:
    window = Window(job["server_pids"], job.get("profile"))
    if job["mode"] == "bare":
        result = await consume_bare(job, window)
        result.update(await broker_check(job["amqp"], job["queue"], delete=True))
        return result
    return await consume_audit(job, window)


async def job_publish(job: Job) -> Result:
    """aio-pika alone with pipelined confirms: `window` publishers share one channel, each
    awaiting its own confirm, so that many are in flight without a task per message."""
    url, queue, count = job["amqp"], job["queue"], job["count"]
    await declare_like_the_bus(url, queue)
    bodies = [(e.id, e.to_json()) for e in make_events(queue, job["nonce"], count)]
    window = Window(job["server_pids"], job.get("profile"))
    routing_key = f"{queue}.user.created"
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=True)
        pending = iter(bodies)

        async def publisher() -> None:
            for message_id, body in pending:
                message = aio_pika.Message(
                    body,
                    content_type=CONTENT_TYPE,
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key, mandatory=True)

        with window.measure():
            await asyncio.wait_for(
                asyncio.gather(*(publisher() for _ in range(job["window"]))), job["timeout"]
            )
    left = await broker_check(url, queue, delete=True)
    if left["left_in_queue"] != count:
        raise RuntimeError(f"{queue} holds {left['left_in_queue']} after publishing {count}")
    return window.result(count, **left)


async def job_outbox_fill(job: Job) -> Result:
    """Rows as `record` writes them, straight into the users service's outbox."""
    settings = Settings(database_url=job["users_db"])
    engine = create_engine(job["users_db"], settings, schema="users")
    count, chunk, kind = job["count"], 5000, job["queue"]
    try:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))
        for start in range(0, count, chunk):
            events = make_events(kind, job["nonce"], min(chunk, count - start), start)
            now = datetime.now(UTC)
            async with engine.begin() as conn:
                await conn.execute(
                    insert(outbox),
                    [
                        {"id": e.id, "type": e.type, "body": e.to_json(), "created_at": now}
                        for e in events
                    ],
                )
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE outbox"))
    finally:
        await engine.dispose()
    await declare_like_the_bus(job["amqp"], kind)
    return {"count": count}


class TimedBus(AmqpBus):
    """`AmqpBus` that notes when each `publish_many` ran: in a relay pass, the time
    between two of them is PostgreSQL's (marking the rows, committing, claiming the next)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.spans: list[tuple[float, float]] = []

    async def publish_many(self, events: Sequence[Event]) -> None:
        started = time.perf_counter()
        try:
            await super().publish_many(events)
        finally:
            self.spans.append((started, time.perf_counter()))

    def breakdown(self, started: float, ended: float) -> dict[str, float]:
        """Seconds publishing, and per-pass milliseconds of each side, early and late."""
        edges = [started, *(t for span in self.spans for t in span), ended]
        database = [edges[i + 1] - edges[i] for i in range(0, len(edges) - 1, 2)]
        publishing = [end - start for start, end in self.spans]
        tenth = max(1, len(self.spans) // 10)

        def ms(values: list[float]) -> float:
            return statistics.median(values) * 1000 if values else 0.0

        return {
            "inner_seconds": sum(publishing),
            "publish_ms_per_pass": ms(publishing),
            "db_ms_first_tenth": ms(database[:tenth]),
            "db_ms_last_tenth": ms(database[-tenth:]),
        }


async def job_relay(job: Job) -> Result:
    """`OutboxRelay.drain()` over the pre-written rows, publishing through `AmqpBus`."""
    count = job["count"]
    settings = Settings(database_url=job["users_db"])
    engine = create_engine(job["users_db"], settings, schema="users")
    window = Window(job["server_pids"], job.get("profile"))
    try:
        await ping(engine)
        async with TimedBus(job["amqp"]) as bus:
            relay = OutboxRelay(engine, bus)
            with window.measure():
                started = time.perf_counter()
                published = await asyncio.wait_for(relay.drain(), job["timeout"])
                ended = time.perf_counter()
            pending = await relay.pending()
    finally:
        await engine.dispose()
    left = await broker_check(job["amqp"], job["queue"], delete=True)
    if published != count or pending != 0 or left["left_in_queue"] != count:
        raise RuntimeError(
            f"relay published {published} of {count}, {pending} rows pending, "
            f"{left['left_in_queue']} messages in the sink queue"
        )
    return window.result(published, pending=pending, **bus.breakdown(started, ended), **left)


JOBS: dict[str, Callable[[Job], Coroutine[Any, Any, Result]]] = {
    "prepare": job_prepare,
    "fill": job_fill,
    "consume": job_consume,
    "publish": job_publish,
    "outbox-fill": job_outbox_fill,
    "relay": job_relay,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    job: Job = json.loads(argv[0])
    run = JOBS[job["job"]](job)
    result: Result
    if job.get("loop", "uvloop") == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(run)
    else:
        result = asyncio.run(run)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
