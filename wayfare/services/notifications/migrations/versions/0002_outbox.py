"""the outbox of notification events

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from wayfare.kit.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
