"""HTTP routes of the audit service: the event log, for administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.auth import AdminUser
from wayfare.kit.validation import SafeStr
from wayfare.services.audit.queries import EventFilter, event_page, event_stats

__all__ = ["router"]

router = APIRouter()


def engine(request: Request) -> AsyncEngine:
    value: AsyncEngine = request.app.state.engine
    return value


EngineDep = Annotated[AsyncEngine, Depends(engine)]


class EventOut(BaseModel):
    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    data: Any
    traceparent: str | None
    ingested_at: datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: int | None


@router.get("/events", response_model=EventPage, tags=["audit"])
async def list_events(
    _admin: AdminUser,
    db: EngineDep,
    type: Annotated[
        SafeStr | None, Query(max_length=200, description="a type, or a pattern: booking.*")
    ] = None,
    subject: Annotated[SafeStr | None, Query(max_length=200)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    page = await event_page(
        db,
        EventFilter(type=type, subject=subject, since=since, until=until),
        cursor=cursor,
        limit=limit,
    )
    return EventPage(
        items=[EventOut.model_validate(row) for row in page.items], next_cursor=page.next_cursor
    )


@router.get("/events/stats", tags=["audit"])
async def stats(_admin: AdminUser, db: EngineDep) -> dict[str, Any]:
    return await event_stats(db)
