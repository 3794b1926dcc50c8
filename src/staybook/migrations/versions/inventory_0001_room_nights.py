"""inventory: room nights

Revision ID: inventory_0001
Revises: 0001_kernel
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0001"
down_revision: str | Sequence[str] | None = "0001_kernel"
branch_labels: str | Sequence[str] | None = ("inventory",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_nights",
        sa.Column("room_type_id", sa.Uuid(), primary_key=True),
        sa.Column("night", sa.Date(), primary_key=True),
        sa.Column("property_id", sa.Uuid(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("booked", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("price_amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("min_stay", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("closed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("closed_to_arrival", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.CheckConstraint("held >= 0 AND booked >= 0 AND total >= 0", name="ck_room_nights_non_negative"),
        sa.CheckConstraint("held + booked <= total", name="ck_room_nights_no_oversell"),
        sa.CheckConstraint("price_amount >= 0 AND min_stay >= 1", name="ck_room_nights_price_and_min_stay"),
    )
    op.create_index("ix_room_nights_property_night", "room_nights", ["property_id", "night"])


def downgrade() -> None:
    op.drop_table("room_nights")
