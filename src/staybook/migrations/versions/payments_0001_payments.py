"""payments: payments, received webhooks, the sandbox provider's ledger and outgoing webhooks

Revision ID: payments_0001
Revises: 0001_kernel
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from staybook.kernel.orm import UTCDateTime

revision: str = "payments_0001"
down_revision: str | Sequence[str] | None = "0001_kernel"
branch_labels: str | Sequence[str] | None = ("payments",)
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("booking_id", sa.Uuid(), nullable=False),
        sa.Column("payer_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("provider", sa.String(30), nullable=False),
        sa.Column("provider_reference", sa.String(100), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("refunded_amount", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'authorised', 'captured', 'failed', 'voided', 'refunded')",
            name="ck_payments_status",
        ),
        sa.CheckConstraint(
            "amount >= 0 AND refunded_amount >= 0 AND refunded_amount <= amount", name="ck_payments_amounts"
        ),
        sa.UniqueConstraint("booking_id", name="uq_payments_booking_id"),
    )
    op.create_index("ix_payments_provider_reference", "payments", ["provider", "provider_reference"])
    op.create_table(
        "payment_webhook_events",
        sa.Column("provider", sa.String(30), primary_key=True),
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "sandbox_charges",
        sa.Column("reference", sa.String(100), primary_key=True),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("token", sa.String(100), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("captured_amount", sa.Integer(), nullable=False),
        sa.Column("refunded_amount", sa.Integer(), nullable=False),
        sa.Column("decline_code", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_sandbox_charges_idempotency_key"),
    )
    op.create_table(
        "sandbox_webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_sandbox_webhooks_pending",
        "sandbox_webhooks",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("sandbox_webhooks")
    op.drop_table("sandbox_charges")
    op.drop_table("payment_webhook_events")
    op.drop_table("payments")
