"""Tables of the payments context: staybook's own record of payments (with its state machine),
received webhooks, and the sandbox provider's ledger (the provider's side, kept apart from
staybook's and read only by `sandbox.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow
from staybook.kernel.states import State, Transitions


class PaymentStatus(State):
    """Staybook's record of a payment (the provider's view of the charge is `ChargeStatus`)."""

    PENDING = "pending"  # opened, the provider not (yet) heard from
    AUTHORISED = "authorised"
    CAPTURED = "captured"
    FAILED = "failed"
    VOIDED = "voided"
    REFUNDED = "refunded"


# Which recorded status may follow which: anything else is a duplicate or an out-of-order event.
PAYMENT_TRANSITIONS = Transitions(
    PaymentStatus,
    {
        PaymentStatus.PENDING: {PaymentStatus.AUTHORISED, PaymentStatus.CAPTURED, PaymentStatus.FAILED},
        PaymentStatus.AUTHORISED: {PaymentStatus.CAPTURED, PaymentStatus.VOIDED},
        PaymentStatus.CAPTURED: {PaymentStatus.REFUNDED},
        PaymentStatus.REFUNDED: {PaymentStatus.REFUNDED},  # a further partial refund
        PaymentStatus.FAILED: set(),
        PaymentStatus.VOIDED: set(),
    },
)


class Payment(Base):
    """One payment of one booking; its id is the idempotency key of every provider call."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # One payment per booking: a second attempt to pay is refused by the database, not by a check.
    booking_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    payer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    provider: Mapped[str] = mapped_column(String(30))
    provider_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(12))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(PaymentStatus.check_constraint("status"), name="status"),
        CheckConstraint("amount >= 0 AND refunded_amount >= 0 AND refunded_amount <= amount", name="amounts"),
        Index("ix_payments_provider_reference", "provider", "provider_reference"),
    )


class WebhookEvent(Base):
    """A provider webhook received and applied; the primary key de-duplicates redeliveries."""

    __tablename__ = "payment_webhook_events"

    provider: Mapped[str] = mapped_column(String(30), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxCharge(Base):
    """The sandbox provider's ledger: what the 'bank' believes about each charge."""

    __tablename__ = "sandbox_charges"

    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The merchant's idempotency key (staybook's payment id): a retried call finds the same charge.
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    token: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    captured_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    decline_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxWebhook(Base):
    """A webhook the sandbox owes the merchant, delivered with retries until acknowledged."""

    __tablename__ = "sandbox_webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "ix_sandbox_webhooks_pending",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL"),
        ),
    )
