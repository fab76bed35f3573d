"""The bookings service's tables: bookings, their sagas and step log, the outbox."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from wayfare.kit.db import UtcDateTime
from wayfare.kit.outbox import outbox_table
from wayfare.kit.saga import saga_tables

__all__ = ["bookings", "metadata", "outbox", "saga_steps", "sagas"]

metadata = MetaData()

bookings = Table(
    "bookings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("status", String(20), nullable=False),
    Column("idempotency_key", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("request", JSON, nullable=False),
    Column("destination", String(100), nullable=True),
    Column("hotel_name", String(200), nullable=True),
    Column("flight_number", String(20), nullable=True),
    Column("price_cents", Integer, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("user_id", "idempotency_key", name="uq_bookings_user_key"),
    Index("ix_bookings_user_created", "user_id", "created_at"),
)

sagas, saga_steps = saga_tables(metadata)
outbox = outbox_table(metadata)
