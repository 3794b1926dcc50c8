"""Consumers: subscriptions to bus subjects with the inbox, retries with backoff and dead letters.

A `Subscription` is handled by workers (a shared durable cursor): its handler
runs in a unit of work that first records the event id in the inbox, so a
redelivered event is handled once. A failing handler is retried with
exponential backoff and jitter; after `max_deliver` attempts the event is
written to `dead_letters` (and, on NATS, the dead-letter subject) and acked.

A `ReplicaSubscription` runs in every API process (in-memory read models such
as the search index): no inbox, handlers must be idempotent.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update

from staybook.kernel import metrics
from staybook.kernel.bus import Bus, Delivery
from staybook.kernel.db import Database, UnitOfWork, insert_on_conflict
from staybook.kernel.events import EventEnvelope
from staybook.kernel.models import DeadLetter, InboxMessage
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.telemetry import continue_trace_from

log = structlog.get_logger("staybook.consumers")


@dataclass(frozen=True)
class Subscription:
    consumer: str  # e.g. "notifications.booking-mail"; one durable cursor per (consumer, subject)
    subject: str  # e.g. "staybook.booking.booking.confirmed" or "staybook.inventory.>"
    handler: Callable[[EventEnvelope, UnitOfWork], Awaitable[None]]
    max_deliver: int | None = None


@dataclass(frozen=True)
class ReplicaSubscription:
    consumer: str
    subject: str
    handler: Callable[[EventEnvelope], Awaitable[None]]


async def record_in_inbox(uow: UnitOfWork, consumer: str, event_id: uuid.UUID) -> bool:
    """Inserts the inbox row; False when this consumer already handled the event."""
    result = await uow.session.execute(
        _INBOX_INSERT, {"consumer": consumer, "event_id": event_id, "handled_at": utcnow()}
    )
    return result.rowcount == 1


# Built once: SQLAlchemy compiles its dialect upserts afresh on every call, and every durable
# delivery runs this statement.
_INBOX_INSERT = insert_on_conflict(
    InboxMessage.__table__, ("consumer", "event_id", "handled_at"), ("consumer", "event_id")
)


class ConsumerRunner:
    def __init__(self, db: Database, bus: Bus, *, max_deliver: int = 5, backoff_seconds: float = 0.5) -> None:
        self.db = db
        self.bus = bus
        self.max_deliver = max_deliver
        self.backoff_seconds = backoff_seconds

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped at five minutes."""
        ceiling = min(300.0, self.backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def start(self, subscriptions: Sequence[Subscription | ReplicaSubscription]) -> None:
        for subscription in subscriptions:
            if isinstance(subscription, Subscription):
                await self.bus.consume(
                    subscription.consumer, subscription.subject, self._durable_handler(subscription), durable=True
                )
            else:
                await self.bus.consume(
                    subscription.consumer, subscription.subject, self._replica_handler(subscription), durable=False
                )

    async def handle_once(self, subscription: Subscription, envelope: EventEnvelope) -> bool:
        """Runs the handler inside a unit of work with the inbox row; False if it was a duplicate."""
        async with self.db.unit_of_work() as uow:
            if not await record_in_inbox(uow, subscription.consumer, envelope.id):
                return False
            await subscription.handler(envelope, uow)
        return True

    def _durable_handler(self, subscription: Subscription):
        max_deliver = subscription.max_deliver or self.max_deliver

        async def on_delivery(delivery: Delivery) -> None:
            envelope = delivery.envelope
            continue_trace_from(envelope.headers)
            started = time.perf_counter()
            try:
                handled = await self.handle_once(subscription, envelope)
            except Exception as error:
                await self._on_failure(subscription, delivery, error, max_deliver)
                return
            finally:
                metrics.EVENT_HANDLER_LATENCY.labels(subscription.consumer).observe(time.perf_counter() - started)
            metrics.EVENTS_HANDLED.labels(subscription.consumer, "handled" if handled else "duplicate").inc()
            await delivery.ack()

        return on_delivery

    async def _on_failure(self, subscription: Subscription, delivery: Delivery, error: Exception, max_deliver: int):
        envelope = delivery.envelope
        reason = f"{type(error).__name__}: {error}"
        if delivery.attempt < max_deliver:
            delay = self.retry_delay(delivery.attempt)
            metrics.EVENTS_HANDLED.labels(subscription.consumer, "retried").inc()
            log.warning(
                "event handler failed; will retry",
                error_type=type(error).__name__,
                context={
                    "consumer": subscription.consumer,
                    "event_id": str(envelope.id),
                    "attempt": delivery.attempt,
                    "retry_in_seconds": round(delay, 3),
                    "error": str(error),
                },
            )
            await delivery.retry_later(delay)
            return
        metrics.EVENTS_HANDLED.labels(subscription.consumer, "dead").inc()
        log.error(
            "event handler gave up; dead-lettered",
            error_type=type(error).__name__,
            context={
                "consumer": subscription.consumer,
                "event_id": str(envelope.id),
                "attempts": delivery.attempt,
                "error": str(error),
            },
        )
        async with self.db.unit_of_work() as uow:
            uow.session.add(
                DeadLetter(
                    id=new_id(),
                    consumer=subscription.consumer,
                    event_id=envelope.id,
                    subject=envelope.subject,
                    envelope=envelope.to_dict(),
                    error=reason[:4000],
                    attempts=delivery.attempt,
                )
            )
        try:
            await self.bus.publish_dead_letter(subscription.consumer, envelope, reason)
        except Exception as publish_error:
            log.warning("dead-letter publish failed", error_type=type(publish_error).__name__)
        await delivery.ack()

    def _replica_handler(self, subscription: ReplicaSubscription):
        async def on_delivery(delivery: Delivery) -> None:
            continue_trace_from(delivery.envelope.headers)
            try:
                await subscription.handler(delivery.envelope)
                metrics.EVENTS_HANDLED.labels(subscription.consumer, "handled").inc()
            except Exception as error:
                metrics.EVENTS_HANDLED.labels(subscription.consumer, "failed").inc()
                log.exception(
                    "replica event handler failed",
                    error_type=type(error).__name__,
                    context={"consumer": subscription.consumer, "event_id": str(delivery.envelope.id)},
                )
            await delivery.ack()

        return on_delivery


async def replay_dead_letter(
    db: Database, runner: ConsumerRunner, subscriptions: Sequence[Subscription], dead_letter_id: uuid.UUID
) -> bool:
    """Runs a dead-lettered event through its consumer again; True when it was handled now."""
    async with db.session() as session:
        dead = await session.get(DeadLetter, dead_letter_id)
    if dead is None:
        return False
    subscription = next((s for s in subscriptions if s.consumer == dead.consumer), None)
    if subscription is None:
        raise LookupError(f"no consumer named {dead.consumer!r}")
    await runner.handle_once(subscription, EventEnvelope.from_dict(dead.envelope))
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            update(DeadLetter).where(DeadLetter.id == dead_letter_id).values(replayed_at=utcnow())
        )
    return True


async def list_dead_letters(db: Database, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
    async with db.session() as session:
        query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.created_at).limit(limit)
        if consumer:
            query = query.where(DeadLetter.consumer == consumer)
        return list((await session.scalars(query)).all())
