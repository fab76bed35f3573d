"""flights, holds and the outbox

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
        "flights",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("number", sa.String(10), nullable=False),
        sa.Column("origin", sa.String(100), nullable=False),
        sa.Column("destination", sa.String(100), nullable=False),
        sa.Column("departs_at", UtcDateTime(), nullable=False),
        sa.Column("arrives_at", UtcDateTime(), nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=False),
        sa.Column("seats", sa.Integer, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),
        sa.Column("confirmed", sa.Integer, nullable=False),
        sa.CheckConstraint("held >= 0 AND confirmed >= 0", name="ck_flights_counts"),
        sa.CheckConstraint("held + confirmed <= seats", name="ck_flights_capacity"),
    )
    op.create_index("ix_flights_departs_at", "flights", ["departs_at"])
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
    op.drop_index("ix_flights_departs_at", "flights")
    op.drop_table("flights")
