"""payments: money amounts are 64-bit columns

Amounts are accepted up to 10^13 minor units at the edge (kernel.schemas.Money); a 32-bit column
refused those over 2^31 - 1 (21,474,836.47 EUR) with a server error on PostgreSQL. SQLite's INTEGER
is 64-bit already.

Revision ID: payments_0002
Revises: payments_0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "payments_0002"
down_revision: str | Sequence[str] | None = "payments_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, nullable)
AMOUNTS = (
    ("payments", "amount", False),
    ("payments", "refunded_amount", False),
    ("sandbox_charges", "amount", False),
    ("sandbox_charges", "captured_amount", False),
    ("sandbox_charges", "refunded_amount", False),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, null in AMOUNTS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=null)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, null in AMOUNTS:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=null)
