"""identity: a user's name is sealed with the rest of their record; the plain column may be NULL

Revision ID: identity_0005
Revises: identity_0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0005"
down_revision: str | Sequence[str] | None = "identity_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("name", existing_type=sa.String(200), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE users SET name = '' WHERE name IS NULL")
    with op.batch_alter_table("users") as batch:
        batch.alter_column("name", existing_type=sa.String(200), nullable=False)
