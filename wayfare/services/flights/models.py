"""The flights service's tables."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, MetaData, String, Table

from wayfare.kit.db import UtcDateTime
from wayfare.kit.holds import holds_table
from wayfare.kit.outbox import outbox_table

__all__ = ["flights", "holds", "metadata", "outbox"]

metadata = MetaData()

# Each flight is its own seat counter; the checks are the last line against overbooking.
flights = Table(
    "flights",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("number", String(10), nullable=False),
    Column("origin", String(100), nullable=False),
    Column("destination", String(100), nullable=False),
    Column("departs_at", UtcDateTime(), nullable=False),
    Column("arrives_at", UtcDateTime(), nullable=False),
    Column("price_cents", Integer, nullable=False),  # per seat
    Column("seats", Integer, nullable=False),
    Column("held", Integer, nullable=False),
    Column("confirmed", Integer, nullable=False),
    CheckConstraint("held >= 0 AND confirmed >= 0", name="ck_flights_counts"),
    CheckConstraint("held + confirmed <= seats", name="ck_flights_capacity"),
    # A day holds a few dozen flights; the cities are then matched case-insensitively.
    Index("ix_flights_departs_at", "departs_at"),
)

holds = holds_table(metadata)

outbox = outbox_table(metadata)
