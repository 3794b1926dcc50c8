"""Tables of the notifications context.

`Contact` is this context's own copy of what it needs about a user (fed by
identity events), so sending never calls back into identity. A `Delivery` is
one message to one recipient on one channel: written by an event handler as
`pending`, claimed and sent by the sender job, and finished as `sent`,
`failed` (permanent), `dead` (retries exhausted) or `suppressed` (erased user).
Every try is a `DeliveryAttempt`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow


class Contact(Base):
    """How to write to a user: locale and time zone (for quiet hours). The address, phone and name
    are identity's, asked for when a delivery is recorded (identity.service.contact_details)."""

    __tablename__ = "notification_contacts"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # A tombstone: an erased user is never written to again, even if an old event names them.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Preference(Base):
    """A user's explicit choice for one channel and notification type; absent means the default."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    notification_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BookingGuest(Base):
    """Who booked what, remembered from booking events so payment events (which name only the
    booking) can reach the guest."""

    __tablename__ = "notification_booking_guests"

    booking_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    guest_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    booking: Mapped[dict] = mapped_column(JSONType)


class Delivery(Base):
    """One message to one recipient on one channel, and where it stands."""

    __tablename__ = "notification_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    # Sealed (kernel/crypto.py): the address or number and the names the message shows; set to
    # NULL when the user is erased (the hash stays).
    recipient: Mapped[str | None] = mapped_column(Text, nullable=True)
    recipient_hash: Mapped[str] = mapped_column(String(64))
    # What the template needs (names, booking details); emptied on erasure like the recipient.
    context: Mapped[dict] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due time of the next try; a claim pushes it out by the lease so other workers skip the row.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set from the provider's delivery receipt (SMS, push); mail servers send none.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # One event never yields the same message twice, even if a handler ran twice.
        UniqueConstraint("event_id", "channel", "template", "recipient_hash", name="uq_notification_deliveries_once"),
        # The sender's only query: due pending rows. Partial, so it holds only the queue.
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_notification_deliveries_status", "status", "id"),
        Index("ix_notification_deliveries_provider_message_id", "provider_message_id"),
    )


class DeliveryAttempt(Base):
    """One try to send a delivery: what was tried, what the provider said."""

    __tablename__ = "notification_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notification_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    recipient_hash: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(64))
    # sent | temporary-failure | permanent-failure
    status: Mapped[str] = mapped_column(String(24))
    provider_message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
