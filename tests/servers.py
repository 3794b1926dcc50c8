"""Real `staybook serve` processes for end-to-end tests, on free ports, against the test database."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from bench.harness import Server

# What `staybook stack up` runs besides PostgreSQL (Typesense comes from the stack extra).
STACK_SERVERS = ["redis-server", "nats-server", "pgbouncer", "prometheus"]


def require_stack_servers() -> None:
    """Skips the test (fails it under STAYBOOK_REQUIRE_SERVICES=1) unless the stack's servers are installed."""
    missing = [name for name in STACK_SERVERS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        message = f"servers missing: {missing or ['postgresql']} (scripts/test installs them)"
        if os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def servers(settings, count: int = 1, env: dict[str, str] | None = None):
    """`count` servers (through tests.faults, so fault injection works), each healthy before use."""
    environment = {
        "STAYBOOK_DATABASE_URL": settings.database_url,
        "STAYBOOK_ENVIRONMENT": "test",
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_DATABASE_POOL_SIZE": "10",
        "STAYBOOK_DATABASE_MAX_OVERFLOW": "0",
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "1000000",
        "STAYBOOK_PAYMENTS__SANDBOX_INSTANT": "true",
        **(env or {}),
    }
    command = [sys.executable, "-m", "tests.faults", "serve", "--port", "{port}"]
    with ExitStack() as stack:
        yield [stack.enter_context(Server(command, env=environment, startup_timeout=120)) for _ in range(count)]
