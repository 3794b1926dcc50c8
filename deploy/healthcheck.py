#!/usr/bin/env python3
"""Container healthcheck: GET /healthz/live when the container serves HTTP, else process liveness.

The image runs several roles (`staybook serve|worker|migrate`); only `serve` listens. The role is
read from PID 1's command line, so one HEALTHCHECK fits every role.
"""

import os
import sys
import urllib.request


def role() -> str:
    with open("/proc/1/cmdline", "rb") as cmdline:
        arguments = [part.decode() for part in cmdline.read().split(b"\0") if part]
    for name in ("serve", "worker", "migrate"):
        if name in arguments:
            return name
    return "serve"


def main() -> int:
    if role() != "serve":
        return 0  # PID 1 is running, or this check would not have been started
    port = os.environ.get("STAYBOOK_HTTP_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/live", timeout=2) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
