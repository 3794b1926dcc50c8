"""Real `staybook serve` processes for end-to-end tests, on free ports, against the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, settings, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "STAYBOOK_DATABASE_URL": settings.database_url,
            "STAYBOOK_ENVIRONMENT": "test",
            "STAYBOOK_LOG_LEVEL": "WARNING",
            "STAYBOOK_DATABASE_POOL_SIZE": "10",
            "STAYBOOK_DATABASE_MAX_OVERFLOW": "0",
            "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "1000000",
            "STAYBOOK_PAYMENTS__SANDBOX_INSTANT": "true",
            **(env or {}),
        }
        # Logs go to a file: an unread pipe fills up (64 KB) and then blocks the server mid-request.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server on {self.url} not ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def servers(settings, count: int = 1, env: dict[str, str] | None = None):
    started = [Server(settings, env) for _ in range(count)]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()
