"""Two `staybook serve` processes sharing one Redis enforce one per-IP limit between them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from bench.harness import free_port

pytestmark = pytest.mark.e2e


def wait_live(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def two_servers(tmp_path, redis_url, redis_key_prefix):
    env = {
        **os.environ,
        "STAYBOOK_ENVIRONMENT": "test",
        "STAYBOOK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'staybook.db'}",
        "STAYBOOK_REDIS_URL": redis_url,
        "STAYBOOK_REDIS_KEY_PREFIX": redis_key_prefix,
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "20",
        "STAYBOOK_GATEWAY__RATE_LIMIT_WINDOW_SECONDS": "300",
        "STAYBOOK_LOG_LEVEL": "WARNING",
    }
    processes, urls = [], []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "staybook.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, process in zip(urls, processes, strict=True):
            wait_live(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_rate_limit_holds_across_two_processes(two_servers):
    first, second = two_servers
    statuses = []
    with httpx.Client(timeout=5) as client:
        for number in range(30):
            url = first if number % 2 == 0 else second
            statuses.append(client.get(url + "/api/v1/me").status_code)
        # Each process alone saw 15 requests, under the limit of 20: only a shared count blocks.
        assert statuses[:20] == [401] * 20
        assert statuses[20:] == [429] * 10
        blocked = client.get(second + "/api/v1/me")
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
