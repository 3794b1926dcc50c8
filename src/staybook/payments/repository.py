"""The payments context's SQL: the saga's statements on the payments table, prepared on PostgreSQL
(kernel.db.Sql, ADR 0012), and the first sight of a provider's webhook event.

Every hot statement returns just the columns a `service.PaymentView` shows.
"""

from __future__ import annotations

import functools

from staybook.kernel.db import Sql, insert_on_conflict, insert_sql
from staybook.payments.models import PAYMENT_TRANSITIONS, Payment, PaymentStatus, WebhookEvent

PAYMENTS = Payment.__table__
# First sight of a provider's webhook event; a repeated (provider, event id) inserts nothing.
NEW_WEBHOOK_EVENT = insert_on_conflict(
    WebhookEvent.__table__, ("provider", "event_id", "event_type", "payload", "received_at"), ("provider", "event_id")
)
# The columns a PaymentView shows; every hot statement returns just these.
_VIEW = (
    "id",
    "booking_id",
    "status",
    "amount",
    "currency",
    "provider",
    "provider_reference",
    "refunded_amount",
    "attempts",
)
_RETURNING_VIEW = " RETURNING " + ", ".join(_VIEW)
_VIEW_COLUMNS = [PAYMENTS.c[name] for name in _VIEW]
_OPEN_COLUMNS = (
    "id",
    "booking_id",
    "payer_id",
    "amount",
    "currency",
    "provider",
    "status",
    "refunded_amount",
    "attempts",
    "created_at",
    "updated_at",
)
# A retried attempt of a still-pending payment of the same amount counts one attempt more;
# any other existing payment of the booking is left alone (no row returned).
OPEN_PAYMENT = Sql(
    insert_sql(PAYMENTS, _OPEN_COLUMNS)
    + " ON CONFLICT (booking_id) DO UPDATE SET attempts = payments.attempts + 1, failure_reason = NULL,"
    " updated_at = :updated_at WHERE payments.status = 'pending' AND payments.amount = :amount" + _RETURNING_VIEW,
    table=PAYMENTS,
    returns=_VIEW_COLUMNS,
)
GET_PAYMENT = Sql(f"SELECT {', '.join(_VIEW)} FROM payments WHERE id = :id", table=PAYMENTS, returns=_VIEW_COLUMNS)
PAYMENT_FOR_BOOKING = Sql(
    f"SELECT {', '.join(_VIEW)} FROM payments WHERE booking_id = :booking_id", table=PAYMENTS, returns=_VIEW_COLUMNS
)
NOTE_ERROR = Sql(
    "UPDATE payments SET failure_reason = :failure_reason, updated_at = :updated_at WHERE id = :id", table=PAYMENTS
)


@functools.cache
def transition(status: str, with_charge: bool, with_reason: bool) -> Sql:
    """The conditional UPDATE that moves a payment to `status` (built once per shape)."""
    changes = ["status = :status", "updated_at = :updated_at"]
    if with_charge:
        changes += ["provider_reference = :provider_reference", "refunded_amount = :refunded_amount"]
    if with_reason:
        changes.append("failure_reason = :failure_reason")
    condition = f"id = :id AND status IN ({PaymentStatus.sql_list(PAYMENT_TRANSITIONS.sources(status))})"
    if status == PaymentStatus.REFUNDED:  # only a refund that raises the refunded amount moves it
        condition += " AND refunded_amount < :refunded_to"
    return Sql(
        f"UPDATE payments SET {', '.join(changes)} WHERE {condition}" + _RETURNING_VIEW,
        table=PAYMENTS,
        types={"refunded_to": PAYMENTS.c.refunded_amount.type},
        returns=_VIEW_COLUMNS,
    )
