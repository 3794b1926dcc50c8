"""inventory: money amounts are 64-bit columns

Amounts are accepted up to 10^13 minor units at the edge (kernel.schemas.Money); a 32-bit column
refused those over 2^31 - 1 (21,474,836.47 EUR) with a server error on PostgreSQL. SQLite's INTEGER
is 64-bit already.

Revision ID: inventory_0003
Revises: inventory_0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0003"
down_revision: str | Sequence[str] | None = "inventory_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, nullable)
AMOUNTS = (
    ("room_nights", "price_amount", False),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, null in AMOUNTS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=null)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, null in AMOUNTS:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=null)
