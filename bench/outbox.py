"""Outbox -> JetStream relay throughput vs raw JetStream async publish, same messages, same run.

Against real PostgreSQL and NATS JetStream (defaults 127.0.0.1). Phases:
1. ceiling: publish N envelopes straight to a JetStream stream with nats-py publish_async;
2. write N events through units of work (100 per transaction) into the outbox;
3. drain them with the relay (SELECT ... FOR UPDATE SKIP LOCKED, publish, mark sent).

    .venv/bin/python -m bench.outbox [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import ClassVar

import psycopg

from bench.harness import ratio, write_result
from staybook import migrate
from staybook.kernel.bus import NatsJetStreamBus
from staybook.kernel.db import Database
from staybook.kernel.events import Event, EventEnvelope
from staybook.kernel.outbox import OutboxRelay
from staybook.kernel.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


class BenchEvent(Event):
    context: ClassVar[str] = "inventory"
    event_type: ClassVar[str] = "bench.happened"
    room_type_id: uuid.UUID
    night: str
    available: int


async def raw_publish(bus: NatsJetStreamBus, count: int, batch: int) -> float:
    envelopes = [
        EventEnvelope.of(BenchEvent(room_type_id=uuid.uuid4(), night="2030-01-01", available=i)) for i in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, batch):
        await bus.publish_batch(envelopes[start : start + batch])
    return count / (time.perf_counter() - started)


async def run(events: int, batch: int) -> dict:
    database = f"staybook_bench_outbox_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:5432/{database}", environment="test")
        await asyncio.to_thread(migrate.upgrade, settings)
        namespace = "bench" + uuid.uuid4().hex[:6]
        bus = NatsJetStreamBus("nats://127.0.0.1:4222", namespace=namespace)
        await bus.connect(["inventory"])
        db = Database(settings)
        try:
            raw_rate = await raw_publish(bus, events, batch)
            started = time.perf_counter()
            for start in range(0, events, 100):
                async with db.unit_of_work() as uow:
                    for i in range(start, min(start + 100, events)):
                        uow.emit(BenchEvent(room_type_id=uuid.uuid4(), night="2030-01-01", available=i))
            write_rate = events / (time.perf_counter() - started)
            relay = OutboxRelay(db, bus, batch_size=batch)
            started = time.perf_counter()
            published = 0
            while published < events:
                published += await relay.publish_pending()
            relay_rate = events / (time.perf_counter() - started)
        finally:
            await db.dispose()
            for info in await bus.js.streams_info():
                if info.config.name.startswith(namespace.upper()):
                    await bus.js.delete_stream(info.config.name)
            await bus.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {
        "raw_publish_per_s": round(raw_rate),
        "outbox_write_per_s": round(write_rate),
        "relay_publish_per_s": round(relay_rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="relay batch size (and raw publish batch)")
    args = parser.parse_args()
    figures = asyncio.run(run(args.events, args.batch))
    relay_ratio = ratio(figures["relay_publish_per_s"], figures["raw_publish_per_s"])
    print(f"raw JetStream publish_async : {figures['raw_publish_per_s']:>8} msg/s   (ceiling)")
    print(f"outbox writes (100/tx)      : {figures['outbox_write_per_s']:>8} events/s")
    print(f"relay outbox -> JetStream   : {figures['relay_publish_per_s']:>8} events/s   ratio {relay_ratio}")
    path = write_result(
        "outbox",
        {
            "what": "outbox relay (PostgreSQL SKIP LOCKED batch -> JetStream publish_async -> mark sent)",
            "ceiling": "raw nats-py JetStream publish_async of the same envelopes, same batch size, same run",
            "events": args.events,
            "batch": args.batch,
            **figures,
            "ratio_to_ceiling": relay_ratio,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
