"""JetStream de-duplicates an event's re-publish within one database history, not across a restore.

After a restore or a failover the database may have forgotten that an event was
published (and what consumers did with it); the relay re-publishes it tagged with
the new timeline, and it must reach the consumers again.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from staybook.kernel.bus import NatsJetStreamBus
from staybook.kernel.events import EventEnvelope

pytestmark = pytest.mark.integration


async def test_a_republish_is_dropped_within_an_epoch_and_delivered_again_in_a_new_one(nats_url, bus_namespace):
    bus = NatsJetStreamBus(nats_url, namespace=bus_namespace)
    await bus.connect(["booking"])
    received: list[uuid.UUID] = []
    two_received = asyncio.Event()

    async def handler(deliveries) -> None:
        for delivery in deliveries:
            received.append(delivery.envelope.id)
            await delivery.ack()
        if len(received) >= 2:
            two_received.set()

    try:
        await bus.consume("test.epoch", "staybook.booking.booking.confirmed", handler, durable=True)
        envelope = EventEnvelope(
            uuid.uuid4(), "staybook.booking.booking.confirmed", "booking.confirmed", datetime.now(UTC), {"n": 1}
        )
        await bus.publish_batch([envelope])
        await bus.publish_batch([envelope])  # the relay crashed before marking it: same history, dropped
        await bus.publish_batch([envelope], epoch="tl00000002")  # after a restore: delivered again
        await asyncio.wait_for(two_received.wait(), timeout=15)
        await asyncio.sleep(0.5)  # a third delivery, if the broker let one through, would arrive by now
        assert received == [envelope.id, envelope.id]
    finally:
        await bus.close()


async def test_the_first_relay_on_a_new_timeline_sends_recent_events_again(production_settings, make_runtime):
    """A restore keeps events marked published whose consumers' records it rolled back: on a timeline
    the database has not relayed from, the relay puts the recent ones back in its queue, once."""
    from sqlalchemy import text

    runtime = await make_runtime(production_settings)
    async with runtime.db.sessions() as session, session.begin():
        # The history before the restore, as the restored database remembers it.
        await session.execute(text("INSERT INTO relay_timelines VALUES ('00000000', now() - interval '1 day')"))
        for minutes_ago in (90, 5, 1):
            await session.execute(
                text(
                    "INSERT INTO outbox (id, subject, event_type, payload, headers, created_at, published_at, "
                    "attempts) VALUES (gen_random_uuid(), 'staybook.booking.booking.confirmed', "
                    "'booking.confirmed', '{}', '{}', now() - make_interval(mins => :m), "
                    "now() - make_interval(mins => :m), 0)"
                ),
                {"m": minutes_ago},
            )
    relay = runtime.relay
    relay.republish_after_restore = timedelta(minutes=10)
    assert await relay.enter_timeline() == 2  # published within 10 minutes of the newest
    assert await relay.enter_timeline() == 0  # once per timeline
    relay._timeline = None  # another process on the same timeline
    assert await relay.enter_timeline() == 0
    async with runtime.db.sessions() as session:
        unpublished = await session.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    assert unpublished == 2
