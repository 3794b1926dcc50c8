"""A Stripe-compatible server for the stripe provider's tests: localstripe (the test extra), on a free port."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from bench.harness import free_port, stop_process

API_KEY = "sk_test_staybook"


def require_localstripe() -> None:
    """Skips the test (fails it under STAYBOOK_REQUIRE_SERVICES=1) unless localstripe is installed."""
    if importlib.util.find_spec("localstripe") is None:
        message = "localstripe is not installed (pip install -e '.[test]')"
        if os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def stripe_server(timeout: float = 30.0) -> Iterator[str]:
    """Yields the base URL of a fresh localstripe; stopped (by its own process handle) afterwards."""
    require_localstripe()
    port = free_port()
    # Its own working directory: it writes its store to disk after every POST.
    with tempfile.TemporaryDirectory(prefix="localstripe-") as workdir:
        process = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                request = urllib.request.Request(url + "/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"})
                try:
                    with urllib.request.urlopen(request, timeout=1):  # noqa: S310 (local URL)
                        break
                except urllib.error.HTTPError:
                    break  # it answers: up
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start")
                time.sleep(0.1)
            yield url
        finally:
            stop_process(process, timeout=10)


def flush(url: str) -> None:
    """Forgets every object the server holds (localstripe's own `DELETE /_config/data`)."""
    request = urllib.request.Request(url + "/_config/data", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (local URL)
        pass


def register_webhook(url: str, target: str, secret: str) -> None:
    """Has the server post its signed events to `target` (localstripe's `POST /_config/webhooks/{id}`)."""
    body = urllib.parse.urlencode({"url": target, "secret": secret}).encode()
    request = urllib.request.Request(url + "/_config/webhooks/staybook", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (local URL)
        pass
