"""Events the identity context publishes, and the subscriptions it reacts with.

Identity records booking and payment activity in its audit log by listening
to those contexts' events (payloads in docs/events.md); only ids, statuses and
amounts go into the log, never the guest's name or contact details. The
consumers append a delivered batch of events at once (`record_activities`: one
chain lock and tail read per batch).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from staybook.identity import audit
from staybook.kernel.events import Event, EventEnvelope


class UserRegistered(Event):
    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.registered"
    # Ids and settings only: a consumer that writes to the user asks identity.service.contact_details.
    user_id: uuid.UUID
    role: str
    locale: str
    timezone: str
    region: str


class UserSignedIn(Event):
    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.signed_in"
    user_id: uuid.UUID
    locale: str
    ip: str | None
    user_agent: str | None
    at: datetime


class UserUpdated(Event):
    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.updated"
    user_id: uuid.UUID
    locale: str
    timezone: str
    role: str


class UserExported(Event):
    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.exported"
    user_id: uuid.UUID
    at: datetime


class UserTokensRevoked(Event):
    """The user's access tokens below `token_version` are void; every API process updates its cache."""

    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.tokens_revoked"
    user_id: uuid.UUID
    token_version: int
    reason: str


class AuditAnchored(Event):
    """A signed head of the audit chain (identity/anchor.py): keep it where the database cannot reach."""

    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "audit.anchored"
    seq: int
    entry_hash: str
    at: str
    signature: str


class UserErased(Event):
    context: ClassVar[str] = "identity"
    event_type: ClassVar[str] = "user.erased"
    user_id: uuid.UUID
    at: datetime


# Payload keys of identity's own events that hold personal data (scrubbed from the outbox on erasure).
PERSONAL_PAYLOAD_KEYS = ("email", "name", "phone", "ip", "user_agent")

_FAILED = {"booking.payment_failed", "payment.failed"}


def audit_record_for(envelope: EventEnvelope) -> audit.AuditRecord:
    """What an audit entry keeps of a booking or payment event: ids, status, money; no personal data."""
    payload = envelope.payload
    result = "failure" if envelope.type in _FAILED else "success"
    if envelope.context == "booking":
        booking = payload.get("booking") or {}
        guest = booking.get("guest_user_id")
        details = {
            k: v
            for k, v in {
                "reference": booking.get("reference"),
                "status": booking.get("status"),
                "property_id": (booking.get("property") or {}).get("property_id"),
                "total": booking.get("total"),
                "cancelled_by": payload.get("cancelled_by"),
                "refund": payload.get("refund"),
                "payment_id": payload.get("payment_id"),
                "reason": payload.get("reason"),
                "event_id": str(envelope.id),
            }.items()
            if v is not None
        }
        return audit.AuditRecord(
            action=envelope.type,
            resource_type="booking",
            resource_id=str(booking.get("booking_id")) if booking.get("booking_id") else None,
            actor_id=_uuid_or_none(guest),
            result=result,
            details=details,
        )
    details = {
        k: v
        for k, v in {
            "booking_id": payload.get("booking_id"),
            "amount": payload.get("amount"),
            "provider": payload.get("provider"),
            "reason": payload.get("reason"),
            "event_id": str(envelope.id),
        }.items()
        if v is not None
    }
    return audit.AuditRecord(
        action=envelope.type,
        resource_type="payment",
        resource_id=str(payload.get("payment_id")) if payload.get("payment_id") else None,
        result=result,
        details=details,
    )


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
