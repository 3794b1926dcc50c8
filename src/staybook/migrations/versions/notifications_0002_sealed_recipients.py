"""notifications: recipients are sealed at rest, and contacts keep no contact data

A delivery's recipient becomes one sealed value (kernel/crypto.py) holding the address and the
names its message uses, so it needs text, not 320 characters. Contacts keep the locale, time zone
and erasure tombstone only: addresses and names are asked of identity when a delivery is recorded.

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0002"
down_revision: str | Sequence[str] | None = "notifications_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.alter_column("recipient", type_=sa.Text(), existing_type=sa.String(320), existing_nullable=True)
    with op.batch_alter_table("notification_contacts") as batch:
        batch.drop_column("email")
        batch.drop_column("phone")
        batch.drop_column("name")


def downgrade() -> None:
    with op.batch_alter_table("notification_contacts") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(32), nullable=True))
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.alter_column("recipient", type_=sa.String(320), existing_type=sa.Text(), existing_nullable=True)
