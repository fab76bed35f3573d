"""Use cases of the notifications service: plain async functions taking their adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import RowMapping

from wayfare.kit.bus import Event
from wayfare.kit.db import UnitOfWork, utcnow
from wayfare.kit.inbox import first_delivery
from wayfare.kit.observability import get_logger
from wayfare.kit.outbox import record
from wayfare.services.notifications.domain import (
    NotificationNotFound,
    UnusableEvent,
    message_for,
)
from wayfare.services.notifications.models import messages

__all__ = [
    "CONSUMER",
    "MAX_PAGE_SIZE",
    "Notification",
    "NotificationPage",
    "apply_event",
    "list_notifications",
    "mark_read",
]

CONSUMER = "notifications"
MAX_PAGE_SIZE = 100
# The inbox's and messages' event_id columns; a longer id could never be stored.
_MAX_EVENT_ID = 64
_log = get_logger("wayfare.notifications")


@dataclass(frozen=True)
class Notification:
    id: str
    kind: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> Notification:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NotificationPage:
    items: list[Notification]
    unread: int
    page: int
    page_size: int


_COLUMNS = [messages.c[name] for name in Notification.__dataclass_fields__]


async def apply_event(uow: UnitOfWork, event: Event) -> bool:
    """Store the event's message once, however often it is delivered; True if stored now.

    Events that can make no message are skipped with a warning rather than raised:
    retrying them would not help. A database error is raised, so the bus retries.
    """
    try:
        if len(event.id) > _MAX_EVENT_ID:
            raise UnusableEvent(f"event id longer than {_MAX_EVENT_ID} characters")
        message = message_for(event.type, event.data)
    except UnusableEvent as exc:
        _log.warning(
            "event skipped: no message can be made of it",
            event_id=event.id[:_MAX_EVENT_ID],
            event_type=event.type,
            reason=str(exc),
        )
        return False
    if message is None:
        return False
    async with uow.begin() as session:
        if not await first_delivery(session, CONSUMER, event.id):
            return False
        await session.execute(
            messages.insert().values(
                id=str(uuid.uuid4()),
                user_id=message.user_id,
                event_id=event.id,
                kind=message.kind,
                title=message.title,
                body=message.body,
                # When it happened, not when it was delivered: a retried event keeps its place.
                created_at=event.time,
                read_at=None,
            )
        )
        # Views of the traveller's unread messages (the gateway's overview) go stale now.
        await record(
            session,
            Event.new(
                type="notification.created",
                source="notifications",
                subject=message.user_id,
                data={"user_id": message.user_id, "kind": message.kind, "event_id": event.id},
            ),
        )
    return True


async def list_notifications(
    uow: UnitOfWork, *, user_id: str, unread_only: bool, page: int, page_size: int
) -> NotificationPage:
    """The user's own messages, unread first, then newest first."""
    page_size = min(page_size, MAX_PAGE_SIZE)
    mine = messages.c.user_id == user_id
    unread = messages.c.read_at.is_(None)
    query = (
        select(*_COLUMNS)
        .where(mine)
        .order_by(case((unread, 0), else_=1), messages.c.created_at.desc(), messages.c.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    if unread_only:
        query = query.where(unread)
    async with uow.begin() as session:
        rows = (await session.execute(query)).mappings().all()
        unread_count = (
            await session.execute(select(func.count()).select_from(messages).where(mine, unread))
        ).scalar_one()
    return NotificationPage(
        items=[Notification.from_row(row) for row in rows],
        unread=int(unread_count),
        page=page,
        page_size=page_size,
    )


async def mark_read(uow: UnitOfWork, *, user_id: str, message_id: str) -> Notification:
    """Mark one of the user's messages read; reading it again keeps the first time."""
    its = (messages.c.id == message_id) & (messages.c.user_id == user_id)
    async with uow.begin() as session:
        await session.execute(
            update(messages).where(its, messages.c.read_at.is_(None)).values(read_at=utcnow())
        )
        row = (await session.execute(select(*_COLUMNS).where(its))).mappings().first()
    if row is None:
        raise NotificationNotFound(message_id)
    return Notification.from_row(row)
