"""booking: bookings, booking history, booking sagas

Revision ID: booking_0001
Revises: 0001_kernel
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from staybook.kernel.orm import UTCDateTime

revision: str = "booking_0001"
down_revision: str | Sequence[str] | None = "0001_kernel"
branch_labels: str | Sequence[str] | None = ("booking",)
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("reference", sa.String(12), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("guest_user_id", sa.Uuid(), nullable=False),
        sa.Column("guest", JSON, nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("property_id", sa.Uuid(), nullable=False),
        sa.Column("property", JSON, nullable=False),
        sa.Column("room_type_id", sa.Uuid(), nullable=False),
        sa.Column("room_type_name", sa.String(200), nullable=False),
        sa.Column("check_in", sa.Date(), nullable=False),
        sa.Column("check_out", sa.Date(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("guests", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("nightly_prices", JSON, nullable=False),
        sa.Column("cancellation_policy", sa.String(20), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_amount", sa.Integer(), nullable=True),
        sa.Column("cancelled_by", sa.String(8), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'confirmed', 'expired', 'payment_failed', 'cancelled')", name="ck_bookings_status"
        ),
        sa.CheckConstraint(
            "check_out > check_in AND units >= 1 AND guests >= 1 AND total_amount >= 0", name="ck_bookings_stay"
        ),
        sa.UniqueConstraint("reference", name="uq_bookings_reference"),
    )
    op.create_index("ix_bookings_guest_created", "bookings", ["guest_user_id", "created_at"])
    op.create_index("ix_bookings_host_check_in", "bookings", ["host_id", "check_in"])
    op.create_index(
        "ix_bookings_held_expires_at",
        "bookings",
        ["expires_at"],
        postgresql_where=sa.text("status = 'held'"),
        sqlite_where=sa.text("status = 'held'"),
    )
    op.create_table(
        "booking_history",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("booking_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_booking_history_booking_id", "booking_history", ["booking_id"])
    op.create_table(
        "booking_sagas",
        sa.Column("booking_id", sa.Uuid(), primary_key=True),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_booking_sagas_step_updated", "booking_sagas", ["step", "updated_at"])


def downgrade() -> None:
    op.drop_table("booking_sagas")
    op.drop_table("booking_history")
    op.drop_table("bookings")
