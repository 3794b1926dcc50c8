"""`staybook stack up|status|down`: the production topology as local processes, started and stopped by pid,
with a booking through all of it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from staybook.app import collect_wiring
from staybook.cli import _check_connections, _production_failures
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings
from staybook.processes import Process
from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer
from tests.contract import checked_async_client
from tests.servers import require_stack_servers

pytestmark = pytest.mark.e2e

# The ports this test's servers take (PgBouncer's own test uses others).
PORTS = "16450-16489"
SHARED_PORTS = {5432, 6379, 4222}


def stack(*args: str, timeout: float = 600, command: str = "staybook.stack") -> subprocess.CompletedProcess:
    """`python -m staybook.stack ...` as scripts/stack runs it, or through `staybook stack` (staybook.cli)."""
    prefix = ["staybook.cli", "stack"] if command == "staybook.cli" else [command]
    return subprocess.run(
        [sys.executable, "-m", *prefix, *args], capture_output=True, text=True, timeout=timeout
    )  # fmt: skip


def stack_env(root: Path) -> dict[str, str]:
    """The stack's settings from its stack.env."""
    env = {}
    for line in (root / "stack.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip("'")
    return env


def wait_for_target_up(prometheus_url: str, job: str, timeout: float = 60) -> bool:
    """True once Prometheus reports a successful scrape of `job`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        targets = httpx.get(prometheus_url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        if any(t["labels"]["job"] == job and t["health"] == "up" for t in targets):
            return True
        time.sleep(1)
    return False


async def book(settings: Settings, api_url: str) -> None:
    """Hold then pay a room type written straight into the stack's database."""
    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    try:
        room = await seed_room_type(runtime, total=1)
    finally:
        await runtime.close()
    headers = bearer(settings, "guest", uuid.uuid4())
    async with checked_async_client(api_url, timeout=30) as client:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key)
        assert held.status_code == 201, held.text
        paid = await client.post(
            f"/api/v1/bookings/{held.json()['id']}/payment",
            json={"payment_method": "tok_success"},
            headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert paid.status_code == 200 and paid.json()["outcome"] == "confirmed", paid.text


@pytest.fixture
def stack_dir():
    require_stack_servers()
    # A directory PostgreSQL's owner can reach (pytest's tmp_path is private to root).
    base = Path(tempfile.mkdtemp(prefix="staybook-stack-"))
    base.chmod(0o755)
    root = base / "stack"
    yield root
    # Whatever happened, nothing the test started outlives it.
    if (root / "stack.json").exists():
        stack("down", "--dir", str(root), "--timeout", "5")
    shutil.rmtree(base, ignore_errors=True)


def test_up_status_ready_check_down(stack_dir, monkeypatch):
    started = stack("up", "--dir", str(stack_dir), "--ports", PORTS, command="staybook.cli")
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((stack_dir / "stack.json").read_text())
    processes = [Process(**entry) for entry in state["processes"]]
    names = {p.name for p in processes}
    assert names == {"postgres", "pgbouncer", "redis", "nats", "typesense", "api", "worker", "prometheus"}
    for process in processes:
        assert process.alive, process
        if process.port is not None:
            assert 16450 <= process.port <= 16489 and process.port not in SHARED_PORTS
    api = next(p for p in processes if p.name == "api")
    assert api.url in started.stdout and f"{api.url}/docs" in started.stdout

    status = stack("status", "--dir", str(stack_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    for process in processes:
        assert f"{process.pid}" in status.stdout
    assert status.stdout.count(" alive ") == len(processes)

    ready = httpx.get(api.url + "/healthz/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert {"database", "redis", "nats"} <= set(checks), checks
    # Production settings: /metrics answers only the scraper's token.
    assert httpx.get(api.url + "/metrics", timeout=10).status_code == 401

    env = stack_env(stack_dir)
    assert env["STAYBOOK_ENVIRONMENT"] == "production"
    # The app reaches PostgreSQL through PgBouncer, and searches Typesense.
    pgbouncer = next(p for p in processes if p.name == "pgbouncer")
    assert env["STAYBOOK_DATABASE_URL"] == pgbouncer.url and f":{pgbouncer.port}/" in pgbouncer.url
    assert env["STAYBOOK_SEARCH__BACKEND"] == "typesense"
    # Prometheus scrapes the API with its token.
    prometheus = next(p for p in processes if p.name == "prometheus")
    assert wait_for_target_up(prometheus.url, "staybook-api"), "Prometheus never scraped the API"
    # What `staybook check` checks, with the stack's settings (in this process: no second start-up).
    for name in [name for name in os.environ if name.startswith("STAYBOOK_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    failures = asyncio.run(_check_connections(settings)) + _production_failures(settings)
    assert failures == []

    # A booking through the whole topology: the API through PgBouncer, its events over NATS to the
    # worker, which sends the guest's mail (written to the stack's mail directory).
    asyncio.run(book(settings, api.url))
    mail = stack_dir / "mail"
    deadline = time.monotonic() + 60
    while not (mail.is_dir() and any(mail.glob("*.eml"))):
        assert time.monotonic() < deadline, f"the worker sent no mail; log {stack_dir / 'logs' / 'worker.log'}"
        time.sleep(0.5)

    stopped = stack("down", "--dir", str(stack_dir))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(process.alive for process in processes)
    assert not (stack_dir / "stack.json").exists()
    assert stack("status", "--dir", str(stack_dir)).returncode == 1
