"""The transactional outbox: events saved with the state change, published after commit.

`record` writes an event into the service's `outbox` table inside the caller's
transaction, so the event exists if and only if the change does. The relay publishes
pending rows in order as soon as a unit of work commits, and sweeps periodically for
anything left behind (a crash, a broker outage). In PostgreSQL rows are claimed with
`FOR UPDATE SKIP LOCKED`, so several relay instances never publish the same row at
once; a relay that dies between publishing and marking republishes on restart, which
consumers absorb through their inbox (delivery is at least once, never at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wayfare.kit.bus import Event, EventBus
from wayfare.kit.db.types import UtcDateTime, utcnow
from wayfare.kit.observability import current_traceparent, get_logger

__all__ = ["OutboxRelay", "outbox_table", "record"]

_log = get_logger("wayfare.outbox")
PENDING_FLAG = "wayfare.outbox.pending"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("id", String(64), nullable=False, unique=True),
        Column("type", String(200), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True),
        Index("ix_outbox_pending", "published_at", "seq"),
    )


_outbox = outbox_table(MetaData())


async def record(session: AsyncSession, event: Event) -> None:
    """Save `event` in the caller's transaction; it is published after the commit."""
    if event.traceparent is None and (traceparent := current_traceparent()):
        event = Event(
            id=event.id,
            source=event.source,
            type=event.type,
            time=event.time,
            data=event.data,
            subject=event.subject,
            traceparent=traceparent,
        )
    await session.execute(
        _outbox.insert().values(
            id=event.id, type=event.type, body=event.to_json(), created_at=utcnow()
        )
    )
    session.info[PENDING_FLAG] = True


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        bus: EventBus,
        *,
        batch_size: int = 500,
        sweep_interval: float = 1.0,
        retention: timedelta = timedelta(days=1),
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        self.retention = retention
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._postgres = engine.dialect.name == "postgresql"

    def after_commit(self, info: dict[str, Any]) -> None:
        """A unit-of-work commit hook: wake the relay when the transaction recorded events."""
        if info.pop(PENDING_FLAG, False):
            self.kick()

    def kick(self) -> None:
        """Publish now rather than at the next sweep; called after each commit with events."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        sweeps = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sweep_interval)
            self._wake.clear()
            try:
                await self.drain()
                sweeps += 1
                if sweeps % 600 == 0:
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning(
                    "outbox relay pass failed; retrying at the next sweep", error=repr(exc)
                )

    async def drain(self) -> int:
        """Publish every pending row; returns how many were published."""
        total = 0
        while True:
            count = await self._publish_batch()
            total += count
            if count < self.batch_size:
                return total

    async def _publish_batch(self) -> int:
        async with self.engine.begin() as conn:
            query = (
                select(_outbox.c.seq, _outbox.c.body)
                .where(_outbox.c.published_at.is_(None))
                .order_by(_outbox.c.seq)
                .limit(self.batch_size)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            # Held locks (PostgreSQL) keep other relays off these rows until we mark them.
            await self.bus.publish_many([Event.from_json(row.body) for row in rows])
            await conn.execute(
                update(_outbox)
                .where(_outbox.c.seq.in_([row.seq for row in rows]))
                .values(published_at=utcnow())
            )
        return len(rows)

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
            return int(result.scalar_one())

    async def prune(self) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(_outbox).where(_outbox.c.published_at < utcnow() - self.retention)
            )
            return int(result.rowcount)
