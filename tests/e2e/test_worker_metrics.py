"""`staybook worker --metrics-port` serves the worker's gauges (outbox, consumers, dead letters),
which exist only in the worker process, for Prometheus to scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from bench.harness import free_port

pytestmark = pytest.mark.e2e


def test_the_worker_serves_its_own_metrics(pg_settings):
    port = free_port()
    env = {
        **os.environ,
        "STAYBOOK_DATABASE_URL": pg_settings.database_url,
        "STAYBOOK_ENVIRONMENT": "test",
        "STAYBOOK_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "staybook.cli", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "staybook.cli", "worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        env=env,
    )
    try:
        text = ""
        for _ in range(600):  # a bound on waiting for the process to start, not a timing claim
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if "staybook_outbox_backlog" in text:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert "staybook_outbox_backlog" in text
        assert "process_cpu_seconds_total" in text
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
