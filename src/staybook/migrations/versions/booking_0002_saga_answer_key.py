"""booking: the payment request's Idempotency-Key on the saga

Revision ID: booking_0002
Revises: booking_0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "booking_0002"
down_revision: str | Sequence[str] | None = "booking_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("booking_sagas") as batch:
        batch.add_column(sa.Column("answer_scope", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answer_key", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("booking_sagas") as batch:
        batch.drop_column("answer_key")
        batch.drop_column("answer_scope")
