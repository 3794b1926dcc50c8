"""Batched durable delivery: a batch of events in one unit of work, the inbox deciding what is new,
a failing event handled alone, and the audit chain appended per batch by racing workers."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from sqlalchemy import select

from staybook.identity import admin as identity_admin
from staybook.identity.bootstrap import SUBSCRIPTIONS as AUDIT_SUBSCRIPTIONS
from staybook.identity.models import AuditEntry
from staybook.kernel.consumers import Subscription, record_batch_in_inbox
from staybook.kernel.events import Event, EventEnvelope
from staybook.kernel.models import DeadLetter, InboxMessage, OutboxMessage
from staybook.kernel.runtime import Wiring
from staybook.kernel.worker import Worker
from tests.integration.test_identity_security import booking_envelope, chain_verdict
from tests.integration.test_outbox_roundtrip import ThingHappened, count_rows, emit_events, eventually


class ThingEchoed(Event):
    """Written by the test handler through its unit of work: committed only if the handling was."""

    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "thing.echoed"
    number: int


def echoing_subscription(calls: list[tuple[int, int]], *, poison: int | None = None) -> Subscription:
    units = itertools.count()

    async def handler(envelope: EventEnvelope, uow, deps) -> None:
        number = envelope.payload["number"]
        calls.append((number, uow.context.setdefault("unit", next(units))))
        if number == poison:
            raise RuntimeError("poison event")
        uow.emit(ThingEchoed(number=number))

    return Subscription("test.echo", ThingHappened.subject(), handler)


async def echoed_numbers(runtime) -> list[int]:
    async with runtime.db.session() as session:
        payloads = (
            await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == "thing.echoed"))
        ).all()
    return sorted(payload["number"] for payload in payloads)


@pytest.fixture(params=["pg_settings", "sqlite_settings"])
def both_databases(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["postgres+nats", "sqlite+in-process"])
def backbone_settings(request):
    return request.getfixturevalue("production_settings" if request.param == "postgres+nats" else "sqlite_settings")


async def test_a_batch_handles_each_new_event_once_in_one_unit_of_work(both_databases, make_runtime):
    runtime = await make_runtime(both_databases, Wiring())
    calls: list[tuple[int, int]] = []
    subscription = echoing_subscription(calls)
    events = [EventEnvelope.of(ThingHappened(number=number)) for number in range(4)]
    assert await runtime.consumers.handle_once(subscription, events[1]) is True
    calls.clear()

    # events[1] is in the inbox already; events[0] comes twice in the same batch.
    outcomes = await runtime.consumers.handle_batch(
        subscription, [events[0], events[1], events[2], events[0], events[3]]
    )

    assert outcomes == [True, False, True, False, True]
    assert [number for number, _ in calls] == [0, 2, 3]
    assert len({unit for _, unit in calls}) == 1, "one unit of work for the batch"
    assert await echoed_numbers(runtime) == [0, 1, 2, 3]
    assert await count_rows(runtime, InboxMessage) == 4
    assert await runtime.consumers.handle_batch(subscription, events) == [False] * 4


async def test_inbox_batch_insert_reports_only_new_ids(both_databases, make_runtime):
    runtime = await make_runtime(both_databases, Wiring())
    ids = [uuid.uuid4() for _ in range(150)]  # more than one statement's worth of rows
    async with runtime.db.unit_of_work() as uow:
        assert await record_batch_in_inbox(uow, "audit", ids[:10]) == set(ids[:10])
    async with runtime.db.unit_of_work() as uow:
        assert await record_batch_in_inbox(uow, "audit", ids) == set(ids[10:])
        assert await record_batch_in_inbox(uow, "mail", ids[:3]) == set(ids[:3])
    assert await count_rows(runtime, InboxMessage) == 153


async def test_one_failing_event_is_retried_and_dead_lettered_alone(backbone_settings, make_runtime):
    settings = backbone_settings.model_copy(update={"consumer_max_deliver": 3, "consumer_backoff_seconds": 0.05})
    calls: list[tuple[int, int]] = []
    wiring = Wiring(contexts=["catalog"], subscriptions=[echoing_subscription(calls, poison=15)])
    runtime = await make_runtime(settings, wiring)
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await emit_events(runtime, 10)
        await eventually(lambda: _at_least(count_rows(runtime, InboxMessage), 10))
        first_units = {unit for number, unit in calls if number < 10}
        await emit_events(runtime, 10, start=10)
        await eventually(lambda: count_rows(runtime, DeadLetter))
    finally:
        await worker.stop()

    assert len(first_units) < 10, "the first ten events came in batches"
    assert await echoed_numbers(runtime) == [n for n in range(20) if n != 15]
    assert await count_rows(runtime, InboxMessage) == 19
    async with runtime.db.session() as session:
        dead = (await session.scalars(select(DeadLetter))).one()
    assert dead.envelope["payload"] == {"number": 15}
    assert dead.attempts == 3
    # The poison event ran alone on each of its three deliveries (and before that in its batch).
    assert sum(1 for number, _ in calls if number == 15) >= 3


async def test_racing_workers_append_batches_to_one_valid_chain(pg_settings, make_runtime):
    first = await make_runtime(pg_settings)
    second = await make_runtime(pg_settings)
    bookings, payments = (next(s for s in AUDIT_SUBSCRIPTIONS if s.subject == subject) for subject in _AUDIT_SUBJECTS)
    batches = [
        [booking_envelope("booking.held") for _ in range(size)] for size in (1, 5, 8, 3, 12, 2, 7, 9, 4, 6, 10, 1)
    ]
    payment_batch = [_payment_envelope() for _ in range(6)]

    async def run(runtime, work) -> None:
        for subscription, batch in work:
            await runtime.consumers.handle_batch(subscription, batch)

    jobs = [
        run(first, [(bookings, batch) for batch in batches[0::2]]),
        run(second, [(bookings, batch) for batch in batches[1::2]]),
        run(second, [(payments, payment_batch)]),
    ]
    # return_exceptions: every job finishes (and releases its connection) before the test judges.
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert [outcome for outcome in outcomes if outcome is not None] == []

    total = sum(len(batch) for batch in batches) + len(payment_batch)
    assert chain_verdict(await identity_admin.verify_audit_chain(first)) == {
        "valid": True,
        "entries": total,
        "broken_at": None,
    }
    async with first.db.session() as session:
        seq_by_event = {
            entry.details["event_id"]: entry.seq for entry in (await session.scalars(select(AuditEntry))).all()
        }
    for batch in [*batches, payment_batch]:
        seqs = [seq_by_event[str(envelope.id)] for envelope in batch]
        assert seqs == list(range(seqs[0], seqs[0] + len(batch))), "a batch is appended in order, unbroken"


_AUDIT_SUBJECTS = ("staybook.booking.>", "staybook.payments.>")


def _payment_envelope() -> EventEnvelope:
    payload = {"payment_id": str(uuid.uuid4()), "booking_id": str(uuid.uuid4()), "provider": "sandbox"}
    payload["amount"] = {"amount": 45000, "currency": "EUR"}
    return EventEnvelope(
        uuid.uuid4(), "staybook.payments.payment.captured", "payment.captured", datetime.now(UTC), payload
    )


async def _at_least(count, minimum: int) -> bool:
    return await count >= minimum
