"""The audit log: every event the platform published, once each."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql

from wayfare.kit.db import UtcDateTime

__all__ = ["events", "metadata"]

metadata = MetaData()

# BIGSERIAL in PostgreSQL; SQLite only auto-increments an INTEGER primary key.
_Seq = BigInteger().with_variant(Integer(), "sqlite")
_Json = JSON().with_variant(postgresql.JSONB(), "postgresql")

events = Table(
    "events",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("type", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("data", _Json, nullable=True),
    Column("traceparent", String(64), nullable=True),
    Column("ingested_at", UtcDateTime(), nullable=False),
    Index("ix_events_type", "type"),
    Index("ix_events_subject", "subject"),
    Index("ix_events_time", "time"),
)
