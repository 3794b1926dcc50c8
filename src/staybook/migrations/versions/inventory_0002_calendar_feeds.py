"""inventory: calendar feeds (signed iCal export URLs)

Revision ID: inventory_0002
Revises: inventory_0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from staybook.kernel.orm import UTCDateTime

revision: str = "inventory_0002"
down_revision: str | Sequence[str] | None = "inventory_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_feeds",
        sa.Column("room_type_id", sa.Uuid(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calendar_feeds")
