"""While Redis is down: availability reads from the database, sign-in works and stays rate limited
(in this process), payment webhooks are applied, and no request gets a 500. A redis-server of the
test's own is killed by pid (never the shared one) and started again on the same port."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest

from tests.bookings import START, seed_room_type
from tests.integration.test_identity_flows import fast_hashing, register

EMAIL, PASSWORD = "ana@example.com", "violet-harbour-91"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _redis_server(port: int, tmp_path):
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _kill(process) -> None:
    process.kill()
    process.wait()


@pytest.fixture
def own_redis_settings(pg_settings, tmp_path):
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    settings = fast_hashing(pg_settings).model_copy(
        update={"redis_url": f"redis://127.0.0.1:{port}/0", "redis_key_prefix": "outage:"}
    )
    return settings, port


async def test_requests_are_answered_while_redis_is_down(own_redis_settings, client_for, tmp_path):
    settings, port = own_redis_settings
    limit = settings.identity.login_per_account[0]
    redis_process = None
    try:
        with _redis_server(port, tmp_path) as redis_process:
            async with client_for(settings) as client:
                runtime = client.app.state.runtime
                room = await seed_room_type(runtime, total=2)
                availability = (
                    f"/api/v1/properties/{room['property_id']}/availability"
                    f"?check_in={START.isoformat()}&check_out={(START + timedelta(days=2)).isoformat()}&guests=2"
                )
                before = await client.get(availability)
                assert before.status_code == 200, before.text
                await register(client)
                _kill(redis_process)

                during = await client.get(availability)
                assert during.status_code == 200, during.text
                assert during.json() == before.json()
                good = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
                assert good.status_code == 200, good.text
                me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {good.json()['access_token']}"})
                assert me.status_code == 200, me.text
                # Credential routes stay limited while Redis is away: the window counts in this process.
                statuses = []
                for _ in range(limit + 2):
                    wrong = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": "wrong-pass-00"})
                    statuses.append(wrong.status_code)
                assert 500 not in statuses
                assert statuses[0] == 401 and statuses[-1] == 429, statuses

                # Redis comes back on the same port: once the breaker's moment is over, it is used again.
                with _redis_server(port, tmp_path):
                    await asyncio.sleep(runtime.cache.breaker.open_seconds + 0.1)
                    after = await client.get(availability)
                    assert after.status_code == 200
                    await runtime.cache.set("probe", {"back": True}, 30)
                    assert await runtime.cache.get("probe") == {"back": True}
                    assert runtime.cache.breaker.closed
    finally:
        if redis_process is not None and redis_process.poll() is None:
            _kill(redis_process)
