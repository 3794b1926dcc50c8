"""booking: the saga's step is one of the saga's steps

A CHECK like the one on `bookings.status`, so a misspelt step is refused by the database. The
values are `booking.domain.SagaStep`'s, written out here as of this revision;
tests/integration/test_booking_states.py checks the database admits exactly the enum's values.

Revision ID: booking_0004
Revises: booking_0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "booking_0004"
down_revision: str | Sequence[str] | None = "booking_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEPS = (
    "held", "authorising", "capturing", "voiding", "refunding", "cancel_refunding",
    "confirmed", "failed", "compensated", "expired", "cancelled",
)  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("booking_sagas") as batch:
        batch.create_check_constraint(op.f("ck_booking_sagas_step"), f"step IN ({', '.join(repr(s) for s in STEPS)})")


def downgrade() -> None:
    with op.batch_alter_table("booking_sagas") as batch:
        batch.drop_constraint(op.f("ck_booking_sagas_step"), type_="check")
