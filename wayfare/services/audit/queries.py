"""Reading the event log: filtered, newest first, in pages keyed by a cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.bus import topic_matches
from wayfare.kit.db import utcnow
from wayfare.services.audit.models import events

__all__ = ["EventFilter", "Page", "event_page", "event_stats"]


@dataclass(frozen=True)
class EventFilter:
    type: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: int | None


async def _types_matching(engine: AsyncEngine, pattern: str) -> list[str]:
    # Few distinct types exist, so matching them here keeps one pattern syntax everywhere.
    async with engine.connect() as conn:
        known = (await conn.execute(select(events.c.type).distinct())).scalars().all()
    return [name for name in known if topic_matches(pattern, name)]


async def event_page(
    engine: AsyncEngine, where: EventFilter, *, cursor: int | None, limit: int
) -> Page:
    query = select(events).order_by(events.c.seq.desc()).limit(limit + 1)
    if where.type is not None:
        if "*" in where.type or "#" in where.type:
            query = query.where(events.c.type.in_(await _types_matching(engine, where.type)))
        else:
            query = query.where(events.c.type == where.type)
    if where.subject is not None:
        query = query.where(events.c.subject == where.subject)
    if where.since is not None:
        query = query.where(events.c.time >= where.since)
    if where.until is not None:
        query = query.where(events.c.time < where.until)
    if cursor is not None:
        query = query.where(events.c.seq < cursor)
    async with engine.connect() as conn:
        rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=rows[-1]["seq"] if more else None)


async def event_stats(engine: AsyncEngine, *, sample: int = 1000) -> dict[str, Any]:
    async with engine.connect() as conn:
        counts = {
            row.type: int(row.n)
            for row in await conn.execute(
                select(events.c.type, func.count().label("n")).group_by(events.c.type)
            )
        }
        recent = (
            await conn.execute(
                select(events.c.time, events.c.ingested_at)
                .order_by(events.c.seq.desc())
                .limit(sample)
            )
        ).all()
    lags = [(row.ingested_at - row.time).total_seconds() for row in recent]
    newest = recent[0].ingested_at if recent else None
    return {
        "total": sum(counts.values()),
        "counts": dict(sorted(counts.items())),
        "ingest_lag_seconds": {
            "mean": sum(lags) / len(lags) if lags else None,
            "max": max(lags) if lags else None,
            "sample": len(lags),
        },
        "last_ingested_at": newest,
        "seconds_since_last_ingest": (utcnow() - newest).total_seconds() if newest else None,
    }
