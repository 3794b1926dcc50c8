"""kernel: the database histories the outbox relay has published from

Revision ID: 0003_kernel_relay_timelines
Revises: 0002_kernel_idempotency
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from staybook.kernel.orm import UTCDateTime

revision: str = "0003_kernel_relay_timelines"
down_revision: str | Sequence[str] | None = "0002_kernel_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay_timelines",
        sa.Column("timeline", sa.String(8), primary_key=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relay_timelines")
