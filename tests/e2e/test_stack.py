"""`staybook stack up|status|down`: the production topology as local processes, started and stopped by pid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from staybook.stack import Process

pytestmark = pytest.mark.e2e

# The ports this test's servers take (PgBouncer's own test uses others).
PORTS = "16450-16489"
SHARED_PORTS = {5432, 6379, 4222}
SERVERS = ["redis-server", "nats-server", "pgbouncer", "prometheus"]


def stack(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "staybook.cli", "stack", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def stack_env(root: Path) -> dict[str, str]:
    """This environment plus the stack's settings from its stack.env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
    for line in (root / "stack.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip("'")
    return env


@pytest.fixture
def stack_dir():
    missing = [name for name in SERVERS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        message = f"servers missing: {missing or ['postgresql']} (scripts/test installs them)"
        if os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # A directory PostgreSQL's owner can reach (pytest's tmp_path is private to root).
    base = Path(tempfile.mkdtemp(prefix="staybook-stack-"))
    base.chmod(0o755)
    root = base / "stack"
    yield root
    # Whatever happened, nothing the test started outlives it.
    if (root / "stack.json").exists():
        stack("down", "--dir", str(root), "--timeout", "5")
    shutil.rmtree(base, ignore_errors=True)


def test_up_status_ready_check_down(stack_dir):
    started = stack("up", "--dir", str(stack_dir), "--ports", PORTS)
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((stack_dir / "stack.json").read_text())
    processes = [Process(**entry) for entry in state["processes"]]
    names = {p.name for p in processes}
    assert {"postgres", "redis", "nats", "api", "worker"} <= names
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
    check = subprocess.run(
        [sys.executable, "-m", "staybook.cli", "check"], capture_output=True, text=True, env=env, timeout=120
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr

    stopped = stack("down", "--dir", str(stack_dir))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(process.alive for process in processes)
    assert not (stack_dir / "stack.json").exists()
    assert stack("status", "--dir", str(stack_dir)).returncode == 1
