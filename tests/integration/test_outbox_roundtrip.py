"""Outbox -> relay -> bus -> consumer, on PostgreSQL + NATS JetStream and on SQLite + the in-process bus."""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import pytest
from sqlalchemy import func, select

from staybook.kernel.consumers import Subscription
from staybook.kernel.events import Event, EventEnvelope
from staybook.kernel.models import DeadLetter, InboxMessage, OutboxMessage
from staybook.kernel.runtime import Wiring
from staybook.kernel.worker import Worker


class ThingHappened(Event):
    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "thing.happened"
    number: int


async def eventually(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def emit_events(runtime, count: int, start: int = 0) -> None:
    async with runtime.db.unit_of_work() as uow:
        for number in range(start, start + count):
            uow.emit(ThingHappened(number=number))


async def count_rows(runtime, model, *where) -> int:
    async with runtime.db.session() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


def recording_wiring(seen: list[int], *, fail_times: int = 0, consumer: str = "test.recorder") -> Wiring:
    failures = {"left": fail_times}

    async def handler(envelope: EventEnvelope, uow, deps) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("handler failed on purpose")
        seen.append(envelope.payload["number"])

    return Wiring(
        contexts=["catalog"],
        subscriptions=[Subscription(consumer, "staybook.catalog.thing.happened", handler)],
    )


@pytest.fixture(params=["postgres+nats", "sqlite+in-process"])
def backbone_settings(request):
    if request.param == "postgres+nats":
        return request.getfixturevalue("production_settings")
    return request.getfixturevalue("sqlite_settings")


async def test_events_reach_consumer_exactly_once(backbone_settings, make_runtime):
    seen: list[int] = []
    runtime = await make_runtime(backbone_settings, recording_wiring(seen))
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await emit_events(runtime, 50)
        await eventually(lambda: _async(len(seen) >= 50))
        await asyncio.sleep(0.3)
    finally:
        await worker.stop()
    assert sorted(seen) == list(range(50))
    assert await count_rows(runtime, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0
    assert await count_rows(runtime, InboxMessage) == 50


async def test_failing_handler_retries_then_dead_letters(backbone_settings, make_runtime):
    seen: list[int] = []
    settings = backbone_settings.model_copy(update={"consumer_max_deliver": 3, "consumer_backoff_seconds": 0.05})
    runtime = await make_runtime(settings, recording_wiring(seen, fail_times=1_000))
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await emit_events(runtime, 1)
        await eventually(lambda: count_rows(runtime, DeadLetter))
    finally:
        await worker.stop()
    async with runtime.db.session() as session:
        dead = (await session.scalars(select(DeadLetter))).one()
    assert dead.attempts == 3
    assert "handler failed on purpose" in dead.error
    assert seen == []


async def test_retry_succeeds_before_dead_letter(backbone_settings, make_runtime):
    seen: list[int] = []
    settings = backbone_settings.model_copy(update={"consumer_max_deliver": 5, "consumer_backoff_seconds": 0.05})
    runtime = await make_runtime(settings, recording_wiring(seen, fail_times=2))
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await emit_events(runtime, 1)
        await eventually(lambda: _async(seen == [0]))
    finally:
        await worker.stop()
    assert await count_rows(runtime, DeadLetter) == 0


async def _async(value):
    return value


@pytest.fixture(params=["pg_settings", "sqlite_settings"])
def both_databases(request):
    return request.getfixturevalue(request.param)


async def test_inbox_records_an_event_once_per_consumer(both_databases, make_runtime):
    from staybook.kernel.consumers import record_in_inbox

    runtime = await make_runtime(both_databases)
    event_id = uuid.uuid4()
    outcomes = []
    for consumer in ("audit", "audit", "mail"):
        async with runtime.db.unit_of_work() as uow:
            outcomes.append(await record_in_inbox(uow, consumer, event_id))
    assert outcomes == [True, False, True]


async def test_idle_relay_publishes_events_committed_by_another_process(backbone_settings, make_runtime):
    """No wake-up reaches this relay (the API commits elsewhere): its polls find the events, in
    order, after idle probes that found nothing."""
    seen: list[int] = []
    runtime = await make_runtime(backbone_settings, recording_wiring(seen))
    api = await make_runtime(backbone_settings)  # its commits wake only its own relay, which does not run
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await asyncio.sleep(0.5)  # several empty polls: the relay is probing (PostgreSQL)
        assert await runtime.relay.has_pending() is (runtime.db.dialect != "postgresql")
        for start in range(0, 30, 10):
            await emit_events(api, 10, start)
        await eventually(lambda: _async(len(seen) >= 30))
        await asyncio.sleep(0.3)
    finally:
        await worker.stop()
    assert sorted(seen) == list(range(30))
    assert await count_rows(runtime, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0
