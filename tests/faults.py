"""Tests-only fault injection: `python -m tests.faults serve ...` runs `staybook` with a saga
checkpoint (given to `create_app`) that kills the process (SIGKILL, no cleanup) when the booking
saga reaches STAYBOOK_TEST_FAULT, or, with STAYBOOK_TEST_FAULT=property-read-raises, makes one
route raise (an unexpected 500)."""

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
    import functools

    from staybook import app

    def crash(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    # `staybook serve` (one worker: this process) loads the app factory by its import string
    # "staybook.app:create_app", so the factory it finds hands the saga this checkpoint.
    app.create_app = functools.partial(app.create_app, saga_checkpoint=crash)


if __name__ == "__main__":
    install()
    from staybook.cli import main

    sys.argv[0] = "staybook"
    main()
