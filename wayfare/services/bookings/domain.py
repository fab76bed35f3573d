"""Booking rules: statuses, what makes two requests the same, what travellers may see."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = [
    "CANCELLED",
    "CONFIRMED",
    "FAILED",
    "PENDING",
    "BookingNotFound",
    "IdempotencyMismatch",
    "NotCancellable",
    "TooManyPending",
    "can_see",
    "request_hash",
]

PENDING, CONFIRMED, FAILED, CANCELLED = "PENDING", "CONFIRMED", "FAILED", "CANCELLED"


class BookingNotFound(Exception):
    pass


class IdempotencyMismatch(Exception):
    """The idempotency key was used before with a different request."""


class TooManyPending(Exception):
    pass


class NotCancellable(Exception):
    pass


def request_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


def can_see(viewer_id: str, viewer_is_admin: bool, owner_id: str) -> bool:
    return viewer_is_admin or viewer_id == owner_id
