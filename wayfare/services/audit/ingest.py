"""Writing a batch of events into the log: one transaction, duplicates ignored.

A database outage is not the events' fault, so the write is retried here, with
backoff, for as long as it takes: the batch stays unacknowledged in the broker
meanwhile, and nothing is lost or dead-lettered. Any other error is raised, and the
bus retries or dead-letters the events themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.bus import Event
from wayfare.kit.db import utcnow
from wayfare.kit.observability import get_logger
from wayfare.services.audit.models import events

__all__ = ["ingest", "is_transient"]

_log = get_logger("wayfare.audit.ingest")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _row(event: Event, now: Any) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time,
        "data": event.data,
        "traceparent": event.traceparent,
        "ingested_at": now,
    }


async def ingest(engine: AsyncEngine, batch: list[Event], *, max_backoff: float = 5.0) -> int:
    """Insert the batch (duplicates skipped); returns how many rows were new."""
    if not batch:
        return 0
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    delay = 0.1
    while True:
        now = utcnow()
        try:
            async with engine.begin() as conn:
                result = await conn.execute(
                    insert(events).on_conflict_do_nothing(index_elements=["id"]),
                    [_row(event, now) for event in batch],
                )
            return max(int(result.rowcount), 0)
        except Exception as exc:
            if not is_transient(exc):
                raise
            _log.warning("audit database unreachable; retrying", error=repr(exc), delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
