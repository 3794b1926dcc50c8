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

Handlers get their context's dependencies explicitly: `handler(envelope, uow, deps)`,
`batch_handler(envelopes, uow, deps)`, replica `handler(envelope, deps)`. `deps` is what
the context's `bootstrap.lifespan` yielded; the composition root binds it into the
subscription (`Wiring.bind`), so the runner never looks anything up by name.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import func, select, update

from staybook.kernel import metrics
from staybook.kernel.bus import MAX_BATCH, Bus, Delivery
from staybook.kernel.db import Database, UnitOfWork, insert_on_conflict, rows_params
from staybook.kernel.errors import Conflict, NotFound
from staybook.kernel.events import EventEnvelope
from staybook.kernel.models import DeadLetter, InboxMessage
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.telemetry import continue_trace_from, span_from

log = structlog.get_logger("staybook.consumers")

EventHandler = Callable[[EventEnvelope, UnitOfWork, Any], Awaitable[None]]
BatchEventHandler = Callable[[Sequence[EventEnvelope], UnitOfWork, Any], Awaitable[None]]
ReplicaEventHandler = Callable[[EventEnvelope, Any], Awaitable[None]]


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
    # Filled by the composition root: the context that owns the subscription, and what that
    # context's lifespan yielded (its handlers' third argument).
    context: str = ""
    deps: Any = None


@dataclass(frozen=True)
class ReplicaSubscription:
    consumer: str
    subject: str
    handler: ReplicaEventHandler
    context: str = ""
    deps: Any = None


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
                await subscription.batch_handler(fresh, uow, subscription.deps)
            else:
                for envelope in fresh:
                    continue_trace_from(envelope.headers)
                    attributes = {
                        "messaging.destination.name": envelope.subject,
                        "messaging.consumer.name": subscription.consumer,
                    }
                    with span_from(f"consume {envelope.type}", envelope.headers.get("traceparent"), **attributes):
                        await subscription.handler(envelope, uow, subscription.deps)
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
                    await subscription.handler(delivery.envelope, subscription.deps)
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


# ------------------------------------------------------------------ dead letters (operators)

REPLAY_TIMEOUT_SECONDS = 60.0


class ReplayFailed(Conflict):
    code, title = "replay-failed", "Replay failed"


@dataclass(frozen=True)
class ConsumerDeadLetters:
    consumer: str
    subject: str | None  # None: a consumer that no longer runs in this version (its letters cannot be replayed)
    waiting: int
    replayed: int


@dataclass(frozen=True)
class ReplayOutcome:
    dead_letter: DeadLetter
    handled: bool  # False: the consumer's inbox already had the event (handled by another replay or a redelivery)


class DeadLetters:
    """What operators do with the events durable consumers gave up on: see them per consumer, and
    run one through its consumer again once the cause is fixed.

    `subscriptions` is the process's list of durable subscriptions (the wiring's, which context
    lifespans may still extend), so every consumer the worker runs can be replayed here. A replay
    runs the consumer's own handler in the calling process, in a unit of work with the inbox row:
    an event handled meanwhile (two operators, a redelivery) is handled once.
    """

    def __init__(self, db: Database, runner: ConsumerRunner, subscriptions: Sequence[Subscription]) -> None:
        self.db = db
        self.runner = runner
        self.subscriptions = subscriptions

    def _subscription(self, consumer: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.consumer == consumer), None)

    async def consumers(self) -> list[ConsumerDeadLetters]:
        """Every durable consumer (those that run and those only dead letters still name), with its counts."""
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(
                        DeadLetter.consumer,
                        func.count().filter(DeadLetter.replayed_at.is_(None)),
                        func.count().filter(DeadLetter.replayed_at.is_not(None)),
                    ).group_by(DeadLetter.consumer)
                )
            ).all()
        counts = {consumer: (waiting, replayed) for consumer, waiting, replayed in rows}
        running = {s.consumer: s.subject for s in self.subscriptions}
        return [
            ConsumerDeadLetters(name, running.get(name), *counts.get(name, (0, 0)))
            for name in sorted(running.keys() | counts.keys())
        ]

    async def find(
        self,
        *,
        consumer: str | None = None,
        replayed: bool = False,
        after: uuid.UUID | None = None,
        limit: int = 50,
    ) -> list[DeadLetter]:
        """Dead letters oldest first (ids are time-ordered), waiting ones or replayed ones, after the cursor id."""
        query = select(DeadLetter).order_by(DeadLetter.id).limit(limit)
        query = query.where(DeadLetter.replayed_at.is_not(None) if replayed else DeadLetter.replayed_at.is_(None))
        if consumer:
            query = query.where(DeadLetter.consumer == consumer)
        if after is not None:
            query = query.where(DeadLetter.id > after)
        async with self.db.session() as session:
            return list((await session.scalars(query)).all())

    async def get(self, dead_letter_id: uuid.UUID) -> DeadLetter:
        async with self.db.session() as session:
            dead = await session.get(DeadLetter, dead_letter_id)
        if dead is None:
            raise NotFound(f"No dead letter {dead_letter_id}")
        return dead

    async def replay(self, dead_letter_id: uuid.UUID, timeout: float = REPLAY_TIMEOUT_SECONDS) -> ReplayOutcome:
        """Runs the dead letter's event through its consumer again and marks it replayed.

        A handler that fails again leaves the letter waiting with the new error and one more
        attempt counted (ReplayFailed, 409); one that runs longer than `timeout` is cancelled
        (its unit of work rolls back) and fails the same way.
        """
        dead = await self.get(dead_letter_id)
        if dead.replayed_at is not None:
            raise Conflict(f"This dead letter was replayed at {dead.replayed_at.isoformat()}")
        subscription = self._subscription(dead.consumer)
        if subscription is None:
            raise Conflict(f"No consumer named {dead.consumer!r} runs in this version; it cannot be replayed")
        envelope = EventEnvelope.from_dict(dead.envelope)
        continue_trace_from(envelope.headers)
        try:
            handled = await asyncio.wait_for(self.runner.handle_once(subscription, envelope), timeout)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            if isinstance(error, TimeoutError):
                reason = f"the handler ran longer than {timeout:g} s"
            async with self.db.unit_of_work() as uow:
                await uow.session.execute(
                    update(DeadLetter)
                    .where(DeadLetter.id == dead.id)
                    .values(error=reason[:4000], attempts=DeadLetter.attempts + 1)
                )
            log.warning(
                "dead letter replay failed",
                error_type=type(error).__name__,
                context={"consumer": dead.consumer, "event_id": str(dead.event_id), "error": reason},
            )
            raise ReplayFailed(f"The consumer failed again: {reason}", consumer=dead.consumer) from None
        replayed_at = utcnow()
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                update(DeadLetter)
                .where(DeadLetter.id == dead.id, DeadLetter.replayed_at.is_(None))
                .values(replayed_at=replayed_at)
            )
        metrics.EVENTS_HANDLED.labels(dead.consumer, "replayed" if handled else "duplicate").inc()
        log.info(
            "dead letter replayed",
            context={"consumer": dead.consumer, "event_id": str(dead.event_id), "handled": handled},
        )
        return ReplayOutcome(await self.get(dead.id), handled)
