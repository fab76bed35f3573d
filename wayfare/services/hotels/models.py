"""The hotels service's tables."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from wayfare.kit.holds import holds_table
from wayfare.kit.outbox import outbox_table

__all__ = ["holds", "hotels", "metadata", "outbox", "room_nights", "room_types"]

metadata = MetaData()

hotels = Table(
    "hotels",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("city", String(100), nullable=False),
    Column("stars", Integer, nullable=False),
    Column("description", String(1000), nullable=False),
    Index("ix_hotels_city", "city"),
)

room_types = Table(
    "room_types",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hotel_id", String(36), ForeignKey("hotels.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("max_guests", Integer, nullable=False),
    Column("price_cents", Integer, nullable=False),  # per room and night
    Column("rooms", Integer, nullable=False),
    Index("ix_room_types_hotel_id", "hotel_id"),
)

# One row per room type and night; the checks are the last line against overbooking.
room_nights = Table(
    "room_nights",
    metadata,
    Column(
        "room_type_id",
        String(36),
        ForeignKey("room_types.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("night", Date, primary_key=True),
    Column("capacity", Integer, nullable=False),
    Column("held", Integer, nullable=False),
    Column("confirmed", Integer, nullable=False),
    CheckConstraint("held >= 0 AND confirmed >= 0", name="ck_room_nights_counts"),
    CheckConstraint("held + confirmed <= capacity", name="ck_room_nights_capacity"),
)

holds = holds_table(
    metadata,
    Column("hotel_id", String(36), nullable=True),
    Column("check_in", Date, nullable=True),
    Column("check_out", Date, nullable=True),
)

outbox = outbox_table(metadata)
