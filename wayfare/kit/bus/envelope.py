"""The CloudEvents 1.0 envelope every Wayfare event travels in, in its JSON format.

`attempt` is delivery metadata set by the bus (1 on first delivery), not part of the
envelope: it is neither serialised nor compared.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import orjson

__all__ = ["DATA_CONTENT_TYPE", "SPEC_VERSION", "Event", "MalformedEvent"]

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"

# Words become AMQP routing-key words, so `*` and `#` (pattern syntax) are excluded.
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class MalformedEvent(ValueError):
    """Bytes that are not a CloudEvents 1.0 JSON envelope this bus can carry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event; its `type` (dotted words, `user.created`) is also its routing key."""

    id: str
    source: str
    type: str
    time: datetime
    data: Any
    subject: str | None = None
    traceparent: str | None = None
    attempt: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        if not _EVENT_TYPE.fullmatch(self.type):
            raise ValueError(f"event type must be dotted words like 'user.created': {self.type!r}")
        if not self.id or not self.source:
            raise ValueError("event id and source must not be empty")
        if self.time.tzinfo is None:
            raise ValueError("event time must be timezone-aware")

    @classmethod
    def new(
        cls,
        *,
        type: str,
        source: str,
        data: Any,
        subject: str | None = None,
        traceparent: str | None = None,
    ) -> Self:
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=type,
            time=datetime.now(UTC),
            data=data,
            subject=subject,
            traceparent=traceparent,
        )

    def with_attempt(self, attempt: int) -> Event:
        return dataclasses.replace(self, attempt=attempt)

    def to_json(self) -> bytes:
        envelope: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.astimezone(UTC),
            "datacontenttype": DATA_CONTENT_TYPE,
            "data": self.data,
        }
        # Absent rather than null: CloudEvents treats the two alike, and absent is smaller.
        if self.subject is not None:
            envelope["subject"] = self.subject
        if self.traceparent is not None:
            envelope["traceparent"] = self.traceparent
        return orjson.dumps(envelope, option=orjson.OPT_UTC_Z)

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"not JSON: {exc}") from None
        if not isinstance(envelope, dict):
            raise MalformedEvent(f"not a JSON object but {type(envelope).__name__}")
        if envelope.get("specversion") != SPEC_VERSION:
            raise MalformedEvent(f"specversion must be {SPEC_VERSION!r}")
        if envelope.get("datacontenttype", DATA_CONTENT_TYPE) != DATA_CONTENT_TYPE:
            raise MalformedEvent(f"datacontenttype must be {DATA_CONTENT_TYPE!r}")
        try:
            return cls(
                id=_text(envelope, "id"),
                source=_text(envelope, "source"),
                type=_text(envelope, "type"),
                time=datetime.fromisoformat(_text(envelope, "time")),
                data=envelope.get("data"),
                subject=_optional_text(envelope, "subject"),
                traceparent=_optional_text(envelope, "traceparent"),
            )
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None


def _text(envelope: dict[str, Any], key: str) -> str:
    value = envelope.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{key!r} must be a string")
    return value


def _optional_text(envelope: dict[str, Any], key: str) -> str | None:
    return None if envelope.get(key) is None else _text(envelope, key)
