"""HTTP routes of the notifications service: the caller's own messages, and marking them read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from wayfare.kit.auth import CurrentUser
from wayfare.kit.db import UnitOfWork
from wayfare.kit.problems import Problem
from wayfare.services.notifications import handlers
from wayfare.services.notifications.domain import NotificationNotFound

__all__ = ["router"]

# Deep enough for anyone's history; bounded so the offset stays a small integer.
_MAX_PAGE = 100_000


def unit_of_work(request: Request) -> UnitOfWork:
    uow: UnitOfWork = request.app.state.uow
    return uow


UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]


class NotificationOut(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, notification: handlers.Notification) -> NotificationOut:
        return cls(
            id=notification.id,
            kind=notification.kind,
            title=notification.title,
            body=notification.body,
            created_at=notification.created_at,
            read_at=notification.read_at,
        )


class NotificationPageOut(BaseModel):
    items: list[NotificationOut]
    unread: int
    page: int
    page_size: int


router = APIRouter()


@router.get("/notifications", response_model=NotificationPageOut, tags=["notifications"])
async def list_notifications(
    user: CurrentUser,
    uow: UowDep,
    unread_only: bool = False,
    page: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1,
    page_size: Annotated[
        int, Query(ge=1, description=f"at most {handlers.MAX_PAGE_SIZE}; more is capped")
    ] = 20,
) -> NotificationPageOut:
    result = await handlers.list_notifications(
        uow, user_id=user.user_id, unread_only=unread_only, page=page, page_size=page_size
    )
    return NotificationPageOut(
        items=[NotificationOut.of(item) for item in result.items],
        unread=result.unread,
        page=result.page,
        page_size=result.page_size,
    )


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationOut,
    tags=["notifications"],
)
async def mark_read(
    notification_id: Annotated[str, Path(max_length=64)], user: CurrentUser, uow: UowDep
) -> NotificationOut:
    try:
        notification = await handlers.mark_read(
            uow, user_id=user.user_id, message_id=notification_id
        )
    except NotificationNotFound as exc:
        raise Problem(404, "no such notification") from exc
    return NotificationOut.of(notification)
