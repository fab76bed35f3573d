"""What the traveller is told about each event: pure text, no I/O.

`message_for` turns an event's type and data into the message to store, None when
the event deserves no message, and raises `UnusableEvent` when the data cannot be
trusted to write one (an unknown type, a missing or malformed field).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

__all__ = [
    "BOOKING_CANCELLED",
    "BOOKING_CONFIRMED",
    "BOOKING_FAILED",
    "WELCOME",
    "Message",
    "NotificationNotFound",
    "UnusableEvent",
    "message_for",
]

WELCOME = "welcome"
BOOKING_CONFIRMED = "booking_confirmed"
BOOKING_FAILED = "booking_failed"
BOOKING_CANCELLED = "booking_cancelled"

# Generous for names, cities, hotels and ids, yet bounded: this text is stored and served.
_MAX_FIELD = 200
_UNKNOWN_REASON = "something went wrong while holding your room and seat"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class UnusableEvent(ValueError):
    """The event's data cannot make a message; the text says why, for the logs."""


class NotificationNotFound(Exception):
    """No such message among the caller's own (someone else's counts as none)."""


@dataclass(frozen=True)
class Message:
    user_id: str
    kind: str
    title: str
    body: str


def message_for(event_type: str, data: Any) -> Message | None:
    if not isinstance(data, dict):
        raise UnusableEvent(f"data is {type(data).__name__}, not an object")
    if event_type == "user.created":
        return _welcome(data)
    if event_type == "booking.requested":
        return None  # the traveller is answered by the API; the outcome follows
    if event_type == "booking.confirmed":
        return _confirmed(data)
    if event_type == "booking.failed":
        return _failed(data)
    if event_type == "booking.cancelled":
        return _cancelled(data)
    raise UnusableEvent(f"no message for event type {event_type!r}")


def _welcome(data: dict[str, Any]) -> Message:
    name = _text(data, "name")
    return Message(
        user_id=_text(data, "id"),
        kind=WELCOME,
        title=f"Welcome to Wayfare, {name}!",
        body="Your account is ready. Find a hotel and a flight, and book them as one trip.",
    )


def _confirmed(data: dict[str, Any]) -> Message:
    destination = _text(data, "destination")
    check_in, check_out = _stay(data)
    nights = (check_out - check_in).days
    return Message(
        user_id=_text(data, "user_id"),
        kind=BOOKING_CONFIRMED,
        title=f"Your trip to {destination} is confirmed",
        body=(
            f"You stay at {_text(data, 'hotel_name')} from {_day(check_in)} to "
            f"{_day(check_out)} ({nights} night{'s' if nights != 1 else ''}), "
            f"flying on {_text(data, 'flight_number')}. Have a good trip!"
        ),
    )


def _failed(data: dict[str, Any]) -> Message:
    destination = _text(data, "destination")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise UnusableEvent(f"'reason' is {type(reason).__name__}, not a string")
    said = (reason or "").strip().rstrip(".")[:_MAX_FIELD] or _UNKNOWN_REASON
    return Message(
        user_id=_text(data, "user_id"),
        kind=BOOKING_FAILED,
        title=f"We could not book your trip to {destination}",
        body=f"The booking did not go through: {said}. Nothing was charged.",
    )


def _cancelled(data: dict[str, Any]) -> Message:
    destination = _text(data, "destination")
    check_in, check_out = _stay(data)
    return Message(
        user_id=_text(data, "user_id"),
        kind=BOOKING_CANCELLED,
        title=f"Your trip to {destination} is cancelled",
        body=(
            f"Your stay at {_text(data, 'hotel_name')} from {_day(check_in)} to "
            f"{_day(check_out)} and your seat on {_text(data, 'flight_number')} "
            "are cancelled."
        ),
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UnusableEvent(f"{key!r} is missing or not a non-empty string")
    value = value.strip()
    # PostgreSQL refuses NUL in text; a value this odd is a producer's bug, not a message.
    if len(value) > _MAX_FIELD or "\x00" in value:
        raise UnusableEvent(f"{key!r} is too long or holds a NUL byte")
    return value


def _date(data: dict[str, Any], key: str) -> date:
    raw = _text(data, key)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw).date()
    except ValueError:
        raise UnusableEvent(f"{key!r} is not an ISO date: {raw!r}") from None


def _stay(data: dict[str, Any]) -> tuple[date, date]:
    check_in, check_out = _date(data, "check_in"), _date(data, "check_out")
    if check_out <= check_in:
        raise UnusableEvent("'check_out' is not after 'check_in'")
    return check_in, check_out


def _day(value: date) -> str:
    # Spelled out by hand: strftime's month names follow the process locale.
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
