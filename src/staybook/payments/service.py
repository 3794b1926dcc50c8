"""Use cases of the payments context: staybook's record of payments, provider calls, webhooks.

The booking saga drives payments: it opens a payment in its own unit of work, calls
the provider outside any transaction (`PaymentsDeps.provider`, built by `bootstrap.lifespan`),
and records the result with `record_*` in the next unit of work, together with its own change. Webhooks
bring the provider's view asynchronously (late answers after a timeout, retries,
out-of-order deliveries); they are verified, de-duplicated by event id, and applied
with the same monotonic transitions, so a duplicate or stale event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select, update

from staybook.kernel.db import UnitOfWork
from staybook.kernel.errors import Conflict, NotFound, StaybookError
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.payments import metrics, repository
from staybook.payments.events import (
    PaymentAuthorised,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from staybook.payments.models import Payment, PaymentStatus
from staybook.payments.provider import (
    ChargeState,
    ChargeStatus,
    IgnoredEvent,
    InvalidSignature,
    PaymentProvider,
    ProviderBreaker,
)

log = structlog.get_logger("staybook.payments")
audit = structlog.get_logger("staybook.audit")

SettlementListener = Callable[[Runtime, uuid.UUID], Awaitable[None]]


@dataclass
class PaymentsDeps:
    """What payments owns in a process: the provider, the circuit breaker on new payments at it,
    and who hears of settlements. A settlement listener is called (outside any transaction) with
    a booking id after a webhook moved its payment; the booking context adds its saga in its own
    lifespan, so payments never imports booking."""

    provider: PaymentProvider
    breaker: ProviderBreaker
    settlement_listeners: list[SettlementListener] = field(default_factory=list)


class BadSignature(StaybookError):
    status, code, title = 400, "invalid-signature", "Webhook signature does not verify"


@dataclass(frozen=True)
class PaymentView:
    id: uuid.UUID
    booking_id: uuid.UUID
    status: str
    amount: int
    currency: str
    provider: str
    provider_reference: str | None
    refunded_amount: int
    attempts: int

    @classmethod
    def of(cls, row) -> PaymentView:
        return cls(
            row.id,
            row.booking_id,
            row.status,
            row.amount,
            row.currency,
            row.provider,
            row.provider_reference,
            row.refunded_amount,
            row.attempts,
        )


def _money(amount: int, currency: str) -> dict:
    return {"amount": amount, "currency": currency}


async def open_payment(
    uow: UnitOfWork, *, booking_id: uuid.UUID, payer_id: uuid.UUID, amount: int, currency: str, provider_name: str
) -> PaymentView:
    """Records the intent to pay (status pending) before the provider is called.

    A booking has one payment. One still pending (the provider failed before reserving
    anything) is tried again: the same row, hence the same idempotency key at the provider,
    with one more attempt counted.
    """
    now = utcnow()
    values = {
        "id": new_id(),
        "booking_id": booking_id,
        "payer_id": payer_id,
        "amount": amount,
        "currency": currency,
        "provider": provider_name,
        "status": PaymentStatus.PENDING,
        "refunded_amount": 0,
        "attempts": 1,
        "created_at": now,
        "updated_at": now,
    }
    row = await uow.fetchrow(repository.OPEN_PAYMENT, values)
    if row is None:
        raise Conflict("This booking already has a payment")
    return PaymentView.of(row)


async def note_error(uow: UnitOfWork, payment_id: uuid.UUID, reason: str) -> None:
    """A provider call failed without an outcome: the payment stays as it is, with the reason noted."""
    await uow.execute(repository.NOTE_ERROR, {"id": payment_id, "failure_reason": reason, "updated_at": utcnow()})


async def get(uow: UnitOfWork, payment_id: uuid.UUID) -> PaymentView | None:
    row = await uow.fetchrow(repository.GET_PAYMENT, {"id": payment_id})
    return PaymentView.of(row) if row is not None else None


async def for_booking(uow: UnitOfWork, booking_id: uuid.UUID) -> PaymentView | None:
    row = await uow.fetchrow(repository.PAYMENT_FOR_BOOKING, {"booking_id": booking_id})
    return PaymentView.of(row) if row is not None else None


async def record(
    uow: UnitOfWork,
    payment_id: uuid.UUID,
    status: PaymentStatus | str,
    *,
    charge: ChargeState | None = None,
    reason: str | None = None,
) -> PaymentView:
    """Moves the payment to `status` if that follows its current one, emitting the payment event.

    One conditional UPDATE (it locks the row): a transition that does not follow (a duplicate
    or stale webhook, a recovery racing a live request) changes nothing and emits nothing.
    A refund moves the payment only when it raises the refunded amount.
    """
    status = PaymentStatus(status)
    values: dict = {"id": payment_id, "status": status, "updated_at": utcnow()}
    if status == PaymentStatus.REFUNDED:
        values["refunded_to"] = charge.refunded_amount if charge is not None else 0
    if charge is not None:
        values["provider_reference"] = charge.reference
        values["refunded_amount"] = charge.refunded_amount
    if reason is not None:
        values["failure_reason"] = reason
    row = await uow.fetchrow(repository.transition(status, charge is not None, reason is not None), values)
    if row is None:  # not a transition that follows: report the payment as it is
        current = await get(uow, payment_id)
        if current is None:
            raise NotFound(f"No payment {payment_id}")
        return current
    reference = row.provider_reference or ""
    amount = _money(row.amount, row.currency)
    if status != PaymentStatus.AUTHORISED:
        metrics.PAYMENTS.labels(_result(status, reason)).inc()
    if status == PaymentStatus.AUTHORISED:
        uow.emit(
            PaymentAuthorised(
                payment_id=row.id,
                booking_id=row.booking_id,
                amount=amount,
                provider=row.provider,
                provider_reference=reference,
            )
        )
    elif status == PaymentStatus.CAPTURED:
        uow.emit(
            PaymentCaptured(
                payment_id=row.id,
                booking_id=row.booking_id,
                amount=amount,
                provider=row.provider,
                provider_reference=reference,
            )
        )
    elif status == PaymentStatus.FAILED:
        uow.emit(
            PaymentFailed(
                payment_id=row.id, booking_id=row.booking_id, reason=reason or "failed", provider=row.provider
            )
        )
    elif status == PaymentStatus.VOIDED:
        uow.emit(PaymentVoided(payment_id=row.id, booking_id=row.booking_id))
    elif status == PaymentStatus.REFUNDED:
        uow.emit(
            PaymentRefunded(
                payment_id=row.id,
                booking_id=row.booking_id,
                amount=_money(row.refunded_amount, row.currency),
                provider_reference=reference,
            )
        )
    return PaymentView.of(row)


def _result(status: PaymentStatus, reason: str | None) -> str:
    """The payments metric's result: a decline is the card's answer, a failure is everything else."""
    if status == PaymentStatus.CAPTURED:
        return "succeeded"
    if status == PaymentStatus.FAILED and reason and ("declin" in reason or "insufficient" in reason):
        return "declined"
    if status in (PaymentStatus.FAILED, PaymentStatus.VOIDED):
        return "failed"
    return status.value


async def count_attempt(uow: UnitOfWork, payment_id: uuid.UUID) -> None:
    await uow.session.execute(update(Payment).where(Payment.id == payment_id).values(attempts=Payment.attempts + 1))


# The payment status a charge's state moves a payment to.
_PAYMENT_STATUS = {
    ChargeStatus.AUTHORISED: PaymentStatus.AUTHORISED,
    ChargeStatus.CAPTURED: PaymentStatus.CAPTURED,
    ChargeStatus.DECLINED: PaymentStatus.FAILED,
    ChargeStatus.VOIDED: PaymentStatus.VOIDED,
    ChargeStatus.REFUNDED: PaymentStatus.REFUNDED,
}


def _payment_id(charge: ChargeState) -> uuid.UUID | None:
    """Staybook's payment id, the first part of every idempotency key it gives a provider."""
    try:
        return uuid.UUID(charge.idempotency_key.split(":", 1)[0])
    except ValueError:
        return None


async def handle_webhook(
    runtime: Runtime, deps: PaymentsDeps, provider_name: str, body: bytes, headers: Mapping[str, str]
) -> str:
    """Verifies, de-duplicates and applies one provider webhook; returns `applied`, `duplicate` or `ignored`.

    The provider module verifies and translates it (`parse_webhook`); what follows is the same for
    every provider. A forged or stale delivery raises BadSignature (400) and leaves an audit line.
    """
    active = deps.provider
    if provider_name != active.name:
        raise NotFound(f"No payment provider {provider_name!r}")
    try:
        event = active.parse_webhook(body, headers)
    except InvalidSignature as error:
        audit.warning(
            "payment webhook refused",
            error_type="InvalidSignature",
            context={"provider": provider_name, "reason": str(error), "bytes": len(body)},
        )
        raise BadSignature(str(error)) from error
    except IgnoredEvent as ignored:
        log.info("payment webhook ignored", context={"event_id": ignored.event_id, "type": ignored.event_type})
        return "ignored"
    except (ValueError, KeyError, TypeError) as error:
        raise BadSignature(f"malformed webhook: {error}") from error
    booking_id = None
    async with runtime.db.unit_of_work() as uow:
        fresh = await uow.session.execute(
            repository.NEW_WEBHOOK_EVENT,
            {
                "provider": provider_name,
                "event_id": event.id,
                "event_type": event.type,
                "payload": {"charge": event.charge.__dict__},
                "received_at": utcnow(),
            },
        )
        if fresh.rowcount != 1:
            return "duplicate"
        payment_id = _payment_id(event.charge)
        payment = await uow.session.get(Payment, payment_id) if payment_id else None
        if payment is None:  # an event that carries no key of ours (a refund, at some providers)
            payment = await uow.session.scalar(
                select(Payment).where(
                    Payment.provider == provider_name, Payment.provider_reference == event.charge.reference
                )
            )
        if payment is None:
            log.info("payment webhook ignored", context={"event_id": event.id, "type": event.type})
            return "ignored"
        # A late `authorised` after we already captured, or any other stale state, is absorbed by record().
        status = _PAYMENT_STATUS[event.charge.status]
        await record(uow, payment.id, status, charge=event.charge, reason=event.charge.decline_code)
        booking_id = payment.booking_id
    for listener in deps.settlement_listeners:
        await listener(runtime, booking_id)
    return "applied"


async def reconcile(runtime: Runtime, active: PaymentProvider, since: datetime | None = None) -> dict:
    """Compares staybook's payments with the provider's books (`charges`), charge by charge.

    A charge is matched to its payment by reference, or by the idempotency key it was created
    with: a payment still pending here whose charge the provider authorised (the answer that
    never arrived) shows as a difference. `since` limits both sides to what was created since.
    """
    query = select(Payment).where(Payment.provider == active.name)
    if since is not None:
        query = query.where(Payment.created_at >= since)
    async with runtime.db.session() as session:
        mine = (await session.scalars(query)).all()
    theirs = {charge.reference: charge async for charge in active.charges(since)}
    ours = {p.provider_reference: p for p in mine if p.provider_reference is not None}
    by_id = {p.id: p for p in mine}
    captured_ours = sum(p.amount for p in ours.values() if p.status in (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED))
    refunded_ours = sum(p.refunded_amount for p in ours.values())
    settled = (ChargeStatus.CAPTURED, ChargeStatus.REFUNDED)
    captured_theirs = sum(c.captured_amount for c in theirs.values() if c.status in settled)
    refunded_theirs = sum(c.refunded_amount for c in theirs.values())
    mismatches = []
    matched: set[uuid.UUID] = set()
    for reference, charge in theirs.items():
        payment = ours.get(reference) or by_id.get(_payment_id(charge))
        expected = _PAYMENT_STATUS[charge.status]
        if payment is None:
            if charge.status != ChargeStatus.DECLINED:
                mismatches.append(
                    {"reference": reference, "problem": "charge unknown to staybook", "provider_status": charge.status}
                )
            continue
        matched.add(payment.id)
        if payment.status != expected or payment.refunded_amount != charge.refunded_amount:
            mismatches.append(
                {
                    "reference": reference,
                    "payment_id": str(payment.id),
                    "problem": "status differs",
                    "staybook_status": payment.status,
                    "provider_status": charge.status,
                    "staybook_refunded": payment.refunded_amount,
                    "provider_refunded": charge.refunded_amount,
                }
            )
    for reference in ours.keys() - theirs.keys():
        mismatches.append({"reference": reference, "problem": "payment unknown to the provider"})
    pending = sum(1 for p in mine if p.status == PaymentStatus.PENDING and p.id not in matched)
    return {
        "provider": active.name,
        "payments": len(ours),
        "provider_charges": len(theirs),
        "pending_without_reference": pending,
        "captured": {"staybook": captured_ours, "provider": captured_theirs},
        "refunded": {"staybook": refunded_ours, "provider": refunded_theirs},
        "mismatches": mismatches,
        "balanced": not mismatches and captured_ours == captured_theirs and refunded_ours == refunded_theirs,
    }


async def export_personal_data(runtime: Runtime, user_id: uuid.UUID) -> dict:
    """The user's payments for their GDPR export: amounts, states and references, never card data
    (the platform holds none: the provider keeps the card behind its token)."""
    async with runtime.db.replica_session() as session:  # an export may be a moment behind
        query = select(Payment).where(Payment.payer_id == user_id).order_by(Payment.created_at)
        rows = (await session.scalars(query)).all()
    return {
        "payments": [
            {
                "id": str(row.id),
                "booking_id": str(row.booking_id),
                "amount": {"amount": row.amount, "currency": row.currency},
                "refunded": {"amount": row.refunded_amount, "currency": row.currency},
                "status": row.status,
                "provider": row.provider,
                "created_at": row.created_at.isoformat(),
            }
            for row in rows
        ]
    }
