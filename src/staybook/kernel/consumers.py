"""Consumers: subscriptions to bus subjects with the inbox, retries with backoff and dead letters.

A `Subscription` is handled by workers (a shared durable cursor). The bus hands
the runner batches (what one JetStream fetch returned); the runner handles a
batch in ONE unit of work: one multi-row inbox insert tells which events are
new, the handler runs for each of those in order (or the subscription's
`batch_handler` once for all of them), one commit, then every delivery is
acked. Fewer, larger transactions: one inbox statement and one WAL flush per
batch instead of per event. A redelivered event is handled once.

If the batch's transaction fails, its events are handled one by one, each in
its own unit of work, so one poison event cannot hold up or dead-letter its
neighbours: a failing event is retried with exponential backoff and jitter;
after `max_deliver` attempts it is written to `dead_letters` (and, on NATS,
the dead-letter subject) and acked. Work a handler did outside the database
before the batch failed is done again then (handlers already had to allow it:
a retried event runs again).

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
from staybook.kernel.bus import MAX_BATCH, Bus, Delivery
from staybook.kernel.db import Database, UnitOfWork, insert_on_conflict, rows_params
from staybook.kernel.events import EventEnvelope
from staybook.kernel.models import DeadLetter, InboxMessage
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.telemetry import continue_trace_from

log = structlog.get_logger("staybook.consumers")

EventHandler = Callable[[EventEnvelope, UnitOfWork], Awaitable[None]]
BatchEventHandler = Callable[[Sequence[EventEnvelope], UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    consumer: str  # e.g. "notifications.booking-mail"; one durable cursor per (consumer, subject)
    subject: str  # e.g. "staybook.booking.booking.confirmed" or "staybook.inventory.>"
    handler: EventHandler
    max_deliver: int | None = None
    # Optional: handles several new events at once, in order, in the batch's unit of work (the
    # audit chain takes its lock and reads its tail once per batch). Must do what `handler`
    # would do for each event; without it the runner calls `handler` per event.
    batch_handler: BatchEventHandler | None = None


@dataclass(frozen=True)
class ReplicaSubscription:
    consumer: str
    subject: str
    handler: Callable[[EventEnvelope], Awaitable[None]]


async def record_in_inbox(uow: UnitOfWork, consumer: str, event_id: uuid.UUID) -> bool:
    """Inserts the inbox row; False when this consumer already handled the event."""
    return event_id in await record_batch_in_inbox(uow, consumer, [event_id])


async def record_batch_in_inbox(uow: UnitOfWork, consumer: str, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Inserts the inbox rows in one statement; returns the ids this consumer had not handled yet."""
    unique = list(dict.fromkeys(event_ids))
    handled_at = utcnow()
    new: set[uuid.UUID] = set()
    for start in range(0, len(unique), MAX_BATCH):
        chunk = unique[start : start + MAX_BATCH]
        # Built once per row count (cached): SQLAlchemy compiles its dialect upserts afresh on
        # every call, and every batch of every durable consumer runs this statement.
        statement = insert_on_conflict(
            InboxMessage.__table__,
            ("consumer", "event_id", "handled_at"),
            ("consumer", "event_id"),
            returning=True,
            rows=len(chunk),
        )
        rows = [{"consumer": consumer, "event_id": event_id, "handled_at": handled_at} for event_id in chunk]
        result = await uow.session.execute(statement, rows_params(rows) if len(rows) > 1 else rows[0])
        new.update(row.event_id for row in result)
    return new


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

    async def handle_batch(self, subscription: Subscription, envelopes: Sequence[EventEnvelope]) -> list[bool]:
        """Handles `envelopes` in order in ONE unit of work with their inbox rows; for each, whether
        it was handled now (False: a duplicate, handled before or earlier in the batch)."""
        async with self.db.unit_of_work() as uow:
            new = await record_batch_in_inbox(uow, subscription.consumer, [e.id for e in envelopes])
            outcomes = []
            for envelope in envelopes:
                outcomes.append(envelope.id in new)
                new.discard(envelope.id)
            fresh = [envelope for envelope, handled in zip(envelopes, outcomes, strict=True) if handled]
            if subscription.batch_handler is not None and fresh:
                await subscription.batch_handler(fresh, uow)
            else:
                for envelope in fresh:
                    continue_trace_from(envelope.headers)
                    await subscription.handler(envelope, uow)
        return outcomes

    async def handle_once(self, subscription: Subscription, envelope: EventEnvelope) -> bool:
        """Runs the handler inside a unit of work with the inbox row; False if it was a duplicate."""
        return (await self.handle_batch(subscription, [envelope]))[0]

    def _durable_handler(self, subscription: Subscription):
        max_deliver = subscription.max_deliver or self.max_deliver

        async def on_deliveries(deliveries: Sequence[Delivery]) -> None:
            if len(deliveries) > 1 and await self._handle_together(subscription, deliveries):
                return
            for delivery in deliveries:
                await self._handle_one(subscription, delivery, max_deliver)

        return on_deliveries

    async def _handle_together(self, subscription: Subscription, deliveries: Sequence[Delivery]) -> bool:
        """One unit of work for the whole batch, then ack all; False (nothing acked) if it failed."""
        started = time.perf_counter()
        try:
            outcomes = await self.handle_batch(subscription, [delivery.envelope for delivery in deliveries])
        except Exception as error:
            log.info(
                "event batch failed; handling its events one by one",
                error_type=type(error).__name__,
                context={"consumer": subscription.consumer, "events": len(deliveries), "error": str(error)},
            )
            return False
        metrics.EVENT_HANDLER_LATENCY.labels(subscription.consumer).observe(time.perf_counter() - started)
        for delivery, handled in zip(deliveries, outcomes, strict=True):
            metrics.EVENTS_HANDLED.labels(subscription.consumer, "handled" if handled else "duplicate").inc()
            await delivery.ack()
        return True

    async def _handle_one(self, subscription: Subscription, delivery: Delivery, max_deliver: int) -> None:
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
        async def on_deliveries(deliveries: Sequence[Delivery]) -> None:
            for delivery in deliveries:
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

        return on_deliveries


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
