"""The notifications service's tables: each traveller's messages, and the inbox."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, Text

from wayfare.kit.db import UtcDateTime
from wayfare.kit.inbox import inbox_table
from wayfare.kit.outbox import outbox_table

__all__ = ["inbox", "messages", "metadata", "outbox"]

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False),
    # The event it tells of: a second guard, after the inbox, against telling it twice.
    Column("event_id", String(64), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("read_at", UtcDateTime(), nullable=True),
    Index("ix_messages_user_id_created_at", "user_id", "created_at"),
)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
