"""Stopping background tasks within a bound, so one stuck handler cannot hold up a shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger("staybook.tasks")


async def cancel_all(tasks: Iterable[asyncio.Task], timeout: float = 10.0) -> list[str]:
    """Cancels the tasks and waits up to `timeout` s for them; returns (and logs) those still running."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return []
    _, still_running = await asyncio.wait(pending, timeout=timeout)
    names = sorted(task.get_name() for task in still_running)
    if names:
        log.warning("tasks did not stop in time; leaving them", context={"tasks": names, "timeout_s": timeout})
    return names
