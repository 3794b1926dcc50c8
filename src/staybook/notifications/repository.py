"""The notifications context's SQL on the driver (kernel.db.Sql, prepared on PostgreSQL): what the
consumers record for every booking event, and the sender's claim and outcome statements.

A sender claims due deliveries in one statement: the due rows, locked and skipped by other
senders, get their due time pushed out by the lease (docs/notifications.md).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer

from staybook.kernel.db import Sql, insert_sql
from staybook.notifications.models import BookingGuest, Delivery, DeliveryAttempt, Preference


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery as the sender claims it (the columns `CLAIM_DUE` returns)."""

    id: uuid.UUID
    user_id: uuid.UUID | None
    channel: str
    template: str
    locale: str
    recipient: str | None
    recipient_hash: str
    context: dict[str, Any]
    attempts: int
    created_at: datetime


# The consumers' statements run on the driver (kernel.db.Sql): the worker runs them for every
# booking event, and a SQLAlchemy execute cost several times the round trip.
REMEMBER_BOOKING = Sql(
    "INSERT INTO notification_booking_guests (booking_id, guest_user_id, booking)"
    " VALUES (:booking_id, :guest_user_id, :booking) ON CONFLICT (booking_id)"
    " DO UPDATE SET guest_user_id = excluded.guest_user_id, booking = excluded.booking",
    table=BookingGuest.__table__,
)
PREFERENCES_OF_TYPE = Sql(
    "SELECT channel, enabled FROM notification_preferences WHERE user_id = :user_id AND notification_type = :type",
    table=Preference.__table__,
    types={"type": Preference.__table__.c.notification_type.type},
    returns=[Preference.__table__.c.channel, Preference.__table__.c.enabled],
)
_DELIVERY_COLUMNS = (
    "id", "event_id", "user_id", "channel", "template", "locale", "recipient", "recipient_hash", "context",
    "status", "attempts", "next_attempt_at", "created_at", "updated_at",
)  # fmt: skip
NEW_DELIVERY = Sql(
    insert_sql(Delivery.__table__, _DELIVERY_COLUMNS)
    + " ON CONFLICT (event_id, channel, template, recipient_hash) DO NOTHING",
    table=Delivery.__table__,
)
_DELIVERIES = Delivery.__table__
CLAIMED_COLUMNS = tuple(field.name for field in dataclasses.fields(ClaimedDelivery))
# Claim in one statement: the due rows, locked and skipped by other senders, get their due time
# pushed out by the lease. A sender whose snapshot still saw them due re-checks the condition on
# the updated row after the lock (READ COMMITTED), so no delivery is claimed twice.
CLAIM_DUE = Sql(
    "UPDATE notification_deliveries SET next_attempt_at = :lease_until WHERE id IN ("
    "SELECT id FROM notification_deliveries WHERE status = 'pending' AND next_attempt_at <= :now"
    " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    f" RETURNING {', '.join(CLAIMED_COLUMNS)}",
    table=_DELIVERIES,
    types={
        "lease_until": _DELIVERIES.c.next_attempt_at.type,
        "now": _DELIVERIES.c.next_attempt_at.type,
        "limit": Integer(),
    },
    returns=[_DELIVERIES.c[name] for name in CLAIMED_COLUMNS],
)
# An attempt's result, guarded by status: an erasure or replay that happened meanwhile wins.
# The COALESCEs leave a column as it is where this outcome does not set it.
RECORD_ATTEMPT_RESULT = Sql(
    "UPDATE notification_deliveries SET status = :status, attempts = :attempts, updated_at = :updated_at,"
    " last_error = :last_error, sent_at = COALESCE(:sent_at, sent_at),"
    " provider_message_id = COALESCE(:provider_message_id, provider_message_id),"
    " next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at)"
    " WHERE id = :id AND status = 'pending'",
    table=_DELIVERIES,
)
DEFER_DELIVERY = Sql(
    "UPDATE notification_deliveries SET next_attempt_at = :next_attempt_at, updated_at = :updated_at"
    " WHERE id = :id AND status = 'pending'",
    table=_DELIVERIES,
)
_ATTEMPT_COLUMNS = (
    "id", "delivery_id", "number", "channel", "recipient_hash", "template", "status", "provider_message_id", "error",
    "attempted_at",
)  # fmt: skip
INSERT_ATTEMPT = Sql(
    insert_sql(DeliveryAttempt.__table__, _ATTEMPT_COLUMNS),
    table=DeliveryAttempt.__table__,
)
