"""The CloudEvents envelope: what goes on the wire and what is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from wayfare.kit.bus import Event, MalformedEvent


def sample(
    type_: str = "user.created",
    data: Any = None,
    subject: str | None = None,
    traceparent: str | None = None,
) -> Event:
    return Event.new(
        type=type_,
        source="/services/users",
        data={"user_id": "u-1", "email": "ada@example.com"} if data is None else data,
        subject=subject,
        traceparent=traceparent,
    )


def test_new_event_has_a_uuid_id_and_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    event = sample()

    assert uuid.UUID(event.id)
    assert event.time.tzinfo is UTC
    assert before <= event.time <= datetime.now(UTC)
    assert event.attempt == 1
    assert sample().id != event.id


def test_json_is_a_cloudevents_1_0_structured_envelope() -> None:
    event = sample(
        subject="u-1", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )

    envelope = orjson.loads(event.to_json())

    assert envelope == {
        "specversion": "1.0",
        "id": event.id,
        "source": "/services/users",
        "type": "user.created",
        "time": event.time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": "u-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data": {"user_id": "u-1", "email": "ada@example.com"},
    }


def test_optional_attributes_are_left_out_rather_than_null() -> None:
    envelope = orjson.loads(sample().to_json())

    assert "subject" not in envelope
    assert "traceparent" not in envelope


def test_an_event_survives_a_round_trip() -> None:
    event = sample(subject="u-1", traceparent="00-abc-def-01", data=[1, "two", None])

    assert Event.from_json(event.to_json()) == event


def test_time_in_another_zone_is_written_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    event = Event(
        id="e-1",
        source="/s",
        type="a.b",
        time=datetime(2025, 6, 1, 12, 0, tzinfo=paris),
        data=None,
    )

    assert orjson.loads(event.to_json())["time"] == "2025-06-01T10:00:00Z"
    assert Event.from_json(event.to_json()).time == event.time


def test_the_attempt_is_delivery_metadata_not_part_of_the_event() -> None:
    event = sample()
    redelivered = event.with_attempt(3)

    assert redelivered.attempt == 3
    assert redelivered == event
    assert redelivered.to_json() == event.to_json()


@pytest.mark.parametrize(
    "type_", ["", "user..created", "user.*", "booking.#", "user created", ".user", "user."]
)
def test_an_event_type_must_be_dotted_words(type_: str) -> None:
    with pytest.raises(ValueError, match="dotted words"):
        sample(type_)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(id="e-1", source="/s", type="a.b", time=datetime(2025, 1, 1), data=None)


def valid() -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads(sample().to_json())
    return envelope


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["a", "list"]', "not a JSON object"),
        (b"null", "not a JSON object"),
        (orjson.dumps({**valid(), "specversion": "0.3"}), "specversion"),
        (orjson.dumps({k: v for k, v in valid().items() if k != "specversion"}), "specversion"),
        (orjson.dumps({**valid(), "datacontenttype": "text/xml"}), "datacontenttype"),
        (orjson.dumps({k: v for k, v in valid().items() if k != "id"}), "'id'"),
        (orjson.dumps({**valid(), "source": 42}), "'source'"),
        (orjson.dumps({**valid(), "type": "user.*"}), "dotted words"),
        (orjson.dumps({**valid(), "time": "yesterday"}), "isoformat"),
        (orjson.dumps({**valid(), "time": "2025-01-01T00:00:00"}), "timezone-aware"),
        (orjson.dumps({**valid(), "subject": ["u-1"]}), "'subject'"),
        (orjson.dumps({**valid(), "id": ""}), "must not be empty"),
    ],
)
def test_anything_but_a_valid_envelope_raises_malformed_event(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        Event.from_json(raw)


def test_a_malformed_event_is_a_value_error() -> None:
    assert issubclass(MalformedEvent, ValueError)


def test_an_envelope_without_data_has_none() -> None:
    envelope = {k: v for k, v in valid().items() if k != "data"}

    assert Event.from_json(orjson.dumps(envelope)).data is None
