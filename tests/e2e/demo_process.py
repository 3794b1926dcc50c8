"""`staybook demo` as a user starts it: its own directory, a port of its own, until it is ready."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.harness import free_port

STAYBOOK = str(Path(sys.executable).parent / "staybook")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any STAYBOOK_ setting, plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")} | extra


@contextlib.contextmanager
def running_demo(
    directory: Path, *, properties: int = 20, port: int | None = None, **env: str
) -> Iterator[tuple[str, Path]]:
    """(base URL, log file) of a demo on `port` (a free one by default), stopped with SIGINT afterwards."""
    port = port or free_port()
    log_path = directory / "demo.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                STAYBOOK,
                "demo",
                "--port",
                str(port),
                "--data-dir",
                str(directory / "demo"),
                "--properties",
                str(properties),
            ],
            cwd=directory,
            env=clean_environment(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                # Ready as a user sees it: the API answers and the demo has printed where it is.
                ready = httpx.get(url + "/healthz/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and f"staybook demo on {url}" in log_path.read_text():
                break
            time.sleep(0.3)
        else:
            pytest.fail("demo did not become ready:\n" + log_path.read_text())
        yield url, log_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
