"""The outbox under failure: relay crashes, parallel relays, a broker that goes away and comes back."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter

import pytest
from bench.harness import free_port
from sqlalchemy import func, select

from staybook.kernel.bus import InProcessBus
from staybook.kernel.models import InboxMessage, OutboxMessage
from staybook.kernel.outbox import OutboxRelay
from staybook.kernel.runtime import Wiring
from staybook.kernel.worker import Worker
from tests.conftest import _admin_connect
from tests.integration.test_outbox_roundtrip import count_rows, emit_events, eventually, recording_wiring


class RecordingBus(InProcessBus):
    """The in-process bus, also counting how often each event id was handed to it."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.published: Counter = Counter()
        self.fail_first = fail_first

    async def publish_batch(self, envelopes, *, epoch: str = "") -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("broker unavailable")
        await asyncio.sleep(0.005)  # a broker round trip, so parallel relays really overlap
        for envelope in envelopes:
            self.published[envelope.id] += 1
        await super().publish_batch(envelopes, epoch=epoch)


async def test_relay_crash_between_publish_and_mark_causes_no_duplicate_handling(production_settings, make_runtime):
    seen: list[int] = []
    runtime = await make_runtime(production_settings, recording_wiring(seen))
    await runtime.consumers.start(runtime.wiring.subscriptions)
    await emit_events(runtime, 20)

    async def crash(_envelopes):
        raise RuntimeError("relay process died after publishing")

    runtime.relay.after_publish_hook = crash
    with pytest.raises(RuntimeError):
        await runtime.relay.publish_pending()
    # The batch reached JetStream but was never marked sent: a restarted relay publishes it again.
    assert await count_rows(runtime, OutboxMessage, OutboxMessage.published_at.is_(None)) == 20
    runtime.relay.after_publish_hook = None
    assert await runtime.relay.publish_pending() == 20
    await eventually(lambda: _value(len(seen) >= 20))
    await asyncio.sleep(0.5)
    assert sorted(seen) == list(range(20))
    assert await count_rows(runtime, InboxMessage) == 20


async def test_two_relays_in_parallel_never_publish_an_event_twice(pg_settings, make_runtime):
    settings = pg_settings.model_copy(update={"database_pool_size": 20})
    runtime = await make_runtime(settings, Wiring())
    for start in range(0, 2000, 200):
        await emit_events(runtime, 200, start)
    bus = RecordingBus()
    relays = [OutboxRelay(runtime.db, bus, batch_size=50) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while (published := await relay.publish_pending()) > 0:
            total += published
        return total

    totals = await asyncio.gather(drain(relays[0]), drain(relays[1]), drain(relays[0]), drain(relays[1]))
    assert sum(totals) == 2000
    assert len(bus.published) == 2000
    assert set(bus.published.values()) == {1}
    assert sum(1 for t in totals if t > 0) >= 2, "both relays should have taken part"


async def test_publish_failures_keep_events_in_the_outbox(sqlite_settings, make_runtime):
    runtime = await make_runtime(sqlite_settings, Wiring())
    await emit_events(runtime, 5)
    relay = OutboxRelay(runtime.db, RecordingBus(fail_first=2))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await relay.publish_pending()
    async with runtime.db.session() as session:
        attempts = (await session.scalars(select(OutboxMessage.attempts))).all()
    assert attempts == [2] * 5
    assert await relay.publish_pending() == 5
    assert await count_rows(runtime, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0


class NatsServer:
    """A private JetStream server for tests that stop and restart the broker."""

    def __init__(self, store) -> None:
        self.port = free_port()
        self.store = store
        self.process = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("nats-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_nats(tmp_path, nats_url):
    if not (shutil.which("nats-server") or __import__("os").path.exists("/usr/sbin/nats-server")):
        pytest.skip("nats-server binary not installed")
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


async def test_broker_outage_loses_nothing_and_readiness_reports_it(pg_settings, private_nats, make_runtime):
    settings = pg_settings.model_copy(
        update={"nats_url": f"nats://127.0.0.1:{private_nats.port}", "bus_namespace": "t" + uuid.uuid4().hex[:8]}
    )
    seen: list[int] = []
    runtime = await make_runtime(settings, recording_wiring(seen))
    worker = Worker(runtime)
    await worker.start(jobs=False)
    try:
        await emit_events(runtime, 10)
        await eventually(lambda: _value(len(seen) >= 10))
        private_nats.stop()
        await emit_events(runtime, 10, start=10)
        checks = await eventually(lambda: _not_ready(runtime), timeout=20)
        assert checks["nats"].startswith("failed")
        await asyncio.sleep(1)
        assert await count_rows(runtime, OutboxMessage, OutboxMessage.published_at.is_(None)) == 10
        private_nats.start()
        await eventually(lambda: _value(len(seen) >= 20), timeout=60)
        assert (await runtime.readiness())["nats"] == "ok"
    finally:
        await worker.stop()
    assert sorted(seen) == list(range(20))


async def test_database_down_gives_503_on_readiness(client_for, sqlite_settings):
    settings = sqlite_settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    async with client_for(settings) as client:
        response = await client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["checks"]["database"].startswith("failed")


async def _value(value):
    return value


async def _not_ready(runtime):
    checks = await runtime.readiness(timeout=1)
    return checks if any(v != "ok" for v in checks.values()) else None


async def count_all(runtime, model) -> int:
    async with runtime.db.session() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_database_refusing_connections_is_a_503_problem_not_a_500(client_for, sqlite_settings):
    from fastapi import APIRouter, Depends

    from staybook.kernel.runtime import Runtime, get_runtime

    settings = sqlite_settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    async with client_for(settings) as client:
        router = APIRouter()

        @router.get("/api/v1/needs-database")
        async def needs_database(runtime: Runtime = Depends(get_runtime)) -> dict:
            async with runtime.db.session() as session:
                await session.execute(select(func.now()))
            return {}

        client.app.include_router(router)
        response = await client.get("/api/v1/needs-database")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"].endswith("/service-unavailable")


async def test_connection_dropped_by_the_server_is_a_503_then_the_pool_recovers(client_for, pg_settings):
    """Pools do not pre-ping: a connection PostgreSQL dropped (restart, failover) fails one request
    with a retryable 503, never a 500, and the next request gets a fresh connection."""
    from fastapi import APIRouter, Depends

    from staybook.kernel.runtime import Runtime, get_runtime

    async with client_for(pg_settings) as client:
        router = APIRouter()

        @router.get("/api/v1/backend-pid")
        async def backend_pid(runtime: Runtime = Depends(get_runtime)) -> dict:
            async with runtime.db.session() as session:
                return {"pid": await session.scalar(select(func.pg_backend_pid()))}

        client.app.include_router(router)
        first = await client.get("/api/v1/backend-pid")
        assert first.status_code == 200
        with _admin_connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.json()["pid"],))
        statuses = []
        for _ in range(3):
            response = await client.get("/api/v1/backend-pid")
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.json()["type"].endswith("/service-unavailable")
        assert 500 not in statuses
        assert statuses[-1] == 200
