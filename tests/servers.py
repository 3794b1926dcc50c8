"""Real `staybook serve` processes for end-to-end tests, on free ports, against the test database."""

from __future__ import annotations

import sys
from contextlib import ExitStack, contextmanager

from bench.harness import Server


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
