"""identity: a region's own database holds its users' sealed records (user_personal_data)

Revision ID: identity_0006
Revises: identity_0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from staybook.kernel.orm import UTCDateTime

revision: str = "identity_0006"
down_revision: str | Sequence[str] | None = "identity_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_personal_data",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("pii_key_id", sa.String(32), nullable=True),
        sa.Column("pii_wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("pii", sa.LargeBinary(), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_user_personal_data_pii_key_id", "user_personal_data", ["pii_key_id"])


def downgrade() -> None:
    op.drop_index("ix_user_personal_data_pii_key_id", table_name="user_personal_data")
    op.drop_table("user_personal_data")
