"""Sending: claiming due deliveries, one attempt each through the mailer or SMS/push provider,
recording outcomes with retries and backoff, dead after the last attempt; provider receipts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update

from staybook.kernel.errors import Conflict, NotFound
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.telemetry import span_from
from staybook.notifications import metrics, repository
from staybook.notifications.mail import compose_email, stay_calendar
from staybook.notifications.models import Delivery
from staybook.notifications.policy import (
    TYPES,
    quiet_hours_end,
    retry_delay,
)
from staybook.notifications.providers import (
    DeliveryFailed,
    DeliveryReceipt,
    PermanentFailure,
)
from staybook.notifications.repository import ClaimedDelivery
from staybook.notifications.service import Notifier, personal_context

log = structlog.get_logger("staybook.notifications")


# ------------------------------------------------------------------ sending


@dataclass(frozen=True)
class Outcome:
    delivery: ClaimedDelivery
    # sent | temporary | permanent | deferred
    kind: str
    provider_message_id: str | None = None
    error: str | None = None
    deferred_until: datetime | None = None


async def claim_due(notifier: Notifier, limit: int) -> list[ClaimedDelivery]:
    """Takes up to `limit` due deliveries for this worker by pushing their due time out by the
    claim lease; the row locks last only for this one statement, never during sending."""
    now = utcnow()
    lease_until = now + timedelta(seconds=notifier.settings.claim_seconds)
    async with notifier.runtime.db.transaction(autocommit=True) as uow:
        rows = await uow.fetch(repository.CLAIM_DUE, {"lease_until": lease_until, "now": now, "limit": limit})
    rows.sort(key=lambda r: r.created_at)  # RETURNING has no order; send in the order they came
    return [ClaimedDelivery(**{name: row[name] for name in repository.CLAIMED_COLUMNS}) for row in rows]


async def attempt_delivery(notifier: Notifier, delivery: ClaimedDelivery) -> Outcome:
    """Renders and sends one delivery; every failure becomes an Outcome, never an exception."""
    notification_type = TYPES[delivery.template]
    with span_from(
        f"send {delivery.channel} {delivery.template}", delivery.context.get("traceparent"), "PRODUCER"
    ) as span:
        outcome = await _attempt(notifier, delivery, notification_type)
        if span is not None and outcome.kind != "sent":
            span.set_attribute("staybook.delivery.outcome", outcome.kind)
        return outcome


async def _attempt(notifier: Notifier, delivery: ClaimedDelivery, notification_type) -> Outcome:
    try:
        address, context = personal_context(notifier.runtime.db.sealer, delivery)
        if address is None:
            raise PermanentFailure("recipient address was erased")
        if delivery.channel == "sms" and not notification_type.urgent:
            s = notifier.settings
            until = quiet_hours_end(utcnow(), context.get("timezone"), s.quiet_hours_start, s.quiet_hours_end)
            if until is not None:
                return Outcome(delivery, "deferred", deferred_until=until)
        if delivery.channel == "email":
            unsubscribe = None
            if not notification_type.transactional and delivery.user_id is not None:
                unsubscribe = notifier.unsubscribe_url(str(delivery.user_id), delivery.template)
            rendered = notifier.templates.render(
                delivery.template, delivery.locale, context, unsubscribe_url=unsubscribe
            )
            calendar = stay_calendar(context["booking"]) if delivery.template == "booking_confirmed" else None
            mail = compose_email(
                rendered,
                sender=notifier.settings.from_address,
                recipient=address,
                recipient_name=context.get("recipient_name"),
                unsubscribe_url=unsubscribe,
                calendar=calendar,
            )
            provider_id = await notifier.mailer.send(mail)
        else:
            rendered = notifier.templates.render(delivery.template, delivery.locale, context)
            provider_id = await notifier.provider.send(
                delivery.channel, address, rendered.short or rendered.subject, str(delivery.id)
            )
    except DeliveryFailed as failure:
        return Outcome(delivery, "permanent" if failure.permanent else "temporary", error=str(failure))
    except Exception as error:
        log.exception(
            "unexpected error sending a notification",
            error_type=type(error).__name__,
            context={"delivery_id": str(delivery.id), "channel": delivery.channel},
        )
        return Outcome(delivery, "temporary", error=f"{type(error).__name__}: {error}")
    return Outcome(delivery, "sent", provider_message_id=provider_id)


async def record_outcomes(notifier: Notifier, outcomes: list[Outcome]) -> None:
    """Writes every attempt and moves each delivery on: sent, retry later, failed or dead. All of
    a pass's writes go out as one statement (deferred writes: each touches its own rows)."""
    settings = notifier.settings
    now = utcnow()
    soonest: datetime | None = None
    async with notifier.runtime.db.transaction() as uow:
        for outcome in outcomes:
            delivery = outcome.delivery
            if outcome.kind == "deferred":
                uow.defer(
                    repository.DEFER_DELIVERY,
                    {"id": delivery.id, "next_attempt_at": outcome.deferred_until, "updated_at": now},
                )
                continue
            number = delivery.attempts + 1
            values: dict[str, Any] = {
                "id": delivery.id,
                "status": "pending",
                "attempts": number,
                "updated_at": now,
                "last_error": outcome.error,
                "sent_at": None,
                "provider_message_id": None,
                "next_attempt_at": None,
            }
            if outcome.kind == "sent":
                values.update(status="sent", sent_at=now, provider_message_id=outcome.provider_message_id)
                metrics.SENT.labels(delivery.channel).inc()
                metrics.DELIVERY_LATENCY.labels(delivery.channel).observe((now - delivery.created_at).total_seconds())
            elif outcome.kind == "permanent":
                values.update(status="failed")
                metrics.FAILED.labels(delivery.channel, "permanent").inc()
                # Not retried, so an operator must hear of it: the log, and the admins' dead letters.
                log.warning(
                    "notification failed permanently",
                    context={"delivery_id": str(delivery.id), "channel": delivery.channel, "error": outcome.error},
                )
            elif number >= settings.max_attempts:
                values.update(status="dead")
                metrics.FAILED.labels(delivery.channel, "temporary").inc()
                metrics.DEAD.labels(delivery.channel).inc()
                log.warning(
                    "notification dead-lettered",
                    context={"delivery_id": str(delivery.id), "attempts": number, "error": outcome.error},
                )
            else:
                due = now + timedelta(
                    seconds=retry_delay(number, settings.retry_base_seconds, settings.retry_max_seconds)
                )
                values.update(next_attempt_at=due)
                soonest = due if soonest is None else min(soonest, due)
                metrics.FAILED.labels(delivery.channel, "temporary").inc()
                metrics.RETRIED.labels(delivery.channel).inc()
            uow.defer(repository.RECORD_ATTEMPT_RESULT, values)
            uow.defer(
                repository.INSERT_ATTEMPT,
                {
                    "id": new_id(),
                    "delivery_id": delivery.id,
                    "number": number,
                    "channel": delivery.channel,
                    "recipient_hash": delivery.recipient_hash,
                    "template": delivery.template,
                    "status": {"sent": "sent", "permanent": "permanent-failure"}.get(outcome.kind, "temporary-failure"),
                    "provider_message_id": outcome.provider_message_id,
                    "error": outcome.error[:4000] if outcome.error else None,
                    "attempted_at": now,
                },
            )
    if soonest is not None:
        notifier.next_retry_at = soonest if notifier.next_retry_at is None else min(notifier.next_retry_at, soonest)


async def send_due(notifier: Notifier) -> int:
    """One pass of the sender: claim a batch, send it concurrently, record the outcomes."""
    claimed = await claim_due(notifier, notifier.settings.batch_size)
    if not claimed:
        return 0
    gate = asyncio.Semaphore(notifier.settings.concurrency)

    async def attempt(delivery: ClaimedDelivery) -> Outcome:
        async with gate:
            return await attempt_delivery(notifier, delivery)

    outcomes = await asyncio.gather(*(attempt(d) for d in claimed))
    await record_outcomes(notifier, list(outcomes))
    return len(claimed)


async def run_sender(runtime: Runtime, notifier: Notifier) -> None:
    """The sender job: sends until the queue has nothing due, then sleeps until woken by a new
    delivery, the next scheduled retry, or the poll interval, whichever comes first."""
    notifier.wakeup.clear()
    while await send_due(notifier) == notifier.settings.batch_size:
        pass
    timeout = notifier.settings.poll_seconds
    if notifier.next_retry_at is not None:
        timeout = max(0.0, min(timeout, (notifier.next_retry_at - utcnow()).total_seconds()))
        notifier.next_retry_at = None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(notifier.wakeup.wait(), timeout=timeout)


async def measure_queue(runtime: Runtime) -> int:
    """Sets the queue-depth gauge to the number of pending deliveries."""
    async with runtime.db.session() as session:
        depth = await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
    metrics.QUEUE_DEPTH.set(depth or 0)
    return depth or 0


async def record_receipt(runtime: Runtime, receipt: DeliveryReceipt) -> bool:
    """Applies a provider's delivery receipt to the SMS or push it names; False if none matches.
    A failed receipt turns a sent delivery into a permanent failure (the carrier gave up)."""
    now = utcnow()
    if receipt.status == "delivered":
        values: dict[str, Any] = {"delivered_at": now, "updated_at": now}
    else:
        values = {"status": "failed", "last_error": f"receipt: {receipt.error or 'failed'}"[:4000], "updated_at": now}
    async with runtime.db.unit_of_work() as uow:
        result = await uow.session.execute(
            update(Delivery)
            .where(
                Delivery.provider_message_id == receipt.provider_message_id,
                Delivery.channel.in_(("sms", "push")),
                Delivery.status == "sent",
            )
            .values(**values)
            .returning(Delivery.channel)
        )
        channels = list(result.scalars())
    if receipt.status == "failed":
        for channel in channels:
            metrics.FAILED.labels(channel, "receipt").inc()
    return bool(channels)


# ------------------------------------------------------------------ dead letters (admin)


UNDELIVERED = ("dead", "failed")


async def list_dead(runtime: Runtime, *, after: uuid.UUID | None, limit: int) -> list[Delivery]:
    """Deliveries that will not be attempted again, oldest first, `limit` after the cursor id: dead
    (attempts exhausted) and failed (refused for good: an invalid address, a provider's verdict)."""
    query = select(Delivery).where(Delivery.status.in_(UNDELIVERED)).order_by(Delivery.id).limit(limit)
    if after is not None:
        query = query.where(Delivery.id > after)
    async with runtime.db.session() as session:
        return list((await session.scalars(query)).all())


async def replay_dead(notifier: Notifier, delivery_id: uuid.UUID) -> Delivery:
    """Puts a dead delivery back in the queue with a fresh set of attempts and wakes the sender."""
    async with notifier.runtime.db.unit_of_work() as uow:
        delivery = await uow.session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise NotFound(f"No delivery {delivery_id}")
        if delivery.status not in UNDELIVERED:
            raise Conflict(f"Delivery {delivery_id} is {delivery.status}, not dead", status_now=delivery.status)
        if delivery.recipient is None:
            raise Conflict("The recipient has been erased; the delivery cannot be replayed")
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = delivery.updated_at = utcnow()
    notifier.wake()
    return delivery
