"""Tables of the booking context: bookings, their history, and the saga record of each."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from staybook.booking.domain import BookingStatus, SagaStep
from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow

_HELD = text(f"status = '{BookingStatus.HELD}'")


class Booking(Base):
    """A guest's stay of `units` rooms of one room type, from hold to confirmation or its end.

    Property and room type facts are copied in at hold time: a booking is a contract,
    and later catalog edits (a renamed room, a new policy) do not change it.
    """

    __tablename__ = "bookings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    guest_user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    guest: Mapped[dict] = mapped_column(JSONType)
    host_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    property_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    property: Mapped[dict] = mapped_column(JSONType)
    room_type_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    room_type_name: Mapped[str] = mapped_column(String(200))
    check_in: Mapped[date] = mapped_column(Date)
    check_out: Mapped[date] = mapped_column(Date)
    units: Mapped[int] = mapped_column(Integer)
    guests: Mapped[int] = mapped_column(Integer)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # [{night, amount}] per unit, as priced by the calendar when the hold was taken.
    nightly_prices: Mapped[list] = mapped_column(JSONType)
    cancellation_policy: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    refund_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(8), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(BookingStatus.check_constraint("status"), name="status"),
        CheckConstraint("check_out > check_in AND units >= 1 AND guests >= 1 AND total_amount >= 0", name="stay"),
        Index("ix_bookings_guest_created", "guest_user_id", "created_at"),
        Index("ix_bookings_host_check_in", "host_id", "check_in"),
        # The expiry job's query: held bookings by deadline. Partial, so it stays small.
        Index(
            "ix_bookings_held_expires_at",
            "expires_at",
            postgresql_where=_HELD,
            sqlite_where=_HELD,
        ),
    )


class BookingHistory(Base):
    """One row per state change of a booking: who moved it, from what, to what, and why."""

    __tablename__ = "booking_history"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BookingSaga(Base):
    """Where the payment saga of a booking stands (docs/booking-saga.md).

    Written before each step's outside call, so after a crash the recovery pass
    knows what may have happened at the provider and finishes or undoes it.
    """

    __tablename__ = "booking_sagas"

    booking_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    step: Mapped[str] = mapped_column(String(20))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The payment request's Idempotency-Key (scope, key): whoever finishes the saga stores the
    # answer there when the request itself could not (it crashed, or the provider was late).
    answer_scope: Mapped[str | None] = mapped_column(String(64), nullable=True)
    answer_key: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        CheckConstraint(SagaStep.check_constraint("step"), name="step"),
        Index("ix_booking_sagas_step_updated", "step", "updated_at"),
    )
