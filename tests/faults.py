"""Tests-only fault injection: `python -m tests.faults serve ...` runs `staybook` with a hook that
kills the process (SIGKILL, no cleanup) when the booking saga reaches STAYBOOK_TEST_FAULT, or,
with STAYBOOK_TEST_FAULT=property-read-raises, makes one route raise (an unexpected 500)."""

from __future__ import annotations

import os
import signal
import sys


def install() -> None:
    step = os.environ.get("STAYBOOK_TEST_FAULT")
    if not step:
        return
    if step == "property-read-raises":
        # A bug in a route: GET /api/v1/properties/{id} raises instead of answering.
        from staybook.catalog import service as catalog

        async def broken(*args, **kwargs):
            raise RuntimeError("injected bug")

        catalog.get_property = broken
        return
    from staybook.booking import saga

    def crash(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    saga.checkpoint_hook = crash


if __name__ == "__main__":
    install()
    from staybook.cli import main

    sys.argv[0] = "staybook"
    main()
