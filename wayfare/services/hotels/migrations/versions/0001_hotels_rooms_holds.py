"""hotels, room types, room-nights, holds and the outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from wayfare.kit.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hotels",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("stars", sa.Integer, nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
    )
    op.create_index("ix_hotels_city", "hotels", ["city"])
    op.create_table(
        "room_types",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "hotel_id",
            sa.String(36),
            sa.ForeignKey("hotels.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("max_guests", sa.Integer, nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=False),
        sa.Column("rooms", sa.Integer, nullable=False),
    )
    op.create_index("ix_room_types_hotel_id", "room_types", ["hotel_id"])
    op.create_table(
        "room_nights",
        sa.Column(
            "room_type_id",
            sa.String(36),
            sa.ForeignKey("room_types.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("night", sa.Date, primary_key=True),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),
        sa.Column("confirmed", sa.Integer, nullable=False),
        sa.CheckConstraint("held >= 0 AND confirmed >= 0", name="ck_room_nights_counts"),
        sa.CheckConstraint("held + confirmed <= capacity", name="ck_room_nights_capacity"),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(36), nullable=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("hotel_id", sa.String(36), nullable=True),
        sa.Column("check_in", sa.Date, nullable=True),
        sa.Column("check_out", sa.Date, nullable=True),
    )
    op.create_index("ix_holds_due", "holds", ["status", "expires_at"])
    op.create_index("ix_holds_resource_id", "holds", ["resource_id"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", "outbox")
    op.drop_table("outbox")
    op.drop_index("ix_holds_resource_id", "holds")
    op.drop_index("ix_holds_due", "holds")
    op.drop_table("holds")
    op.drop_table("room_nights")
    op.drop_index("ix_room_types_hotel_id", "room_types")
    op.drop_table("room_types")
    op.drop_index("ix_hotels_city", "hotels")
    op.drop_table("hotels")
