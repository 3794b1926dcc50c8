"""Events the search context publishes. Its subscriptions (catalog and inventory events, and
the rebuild request below) are per-process replica subscriptions started by `bootstrap.lifespan`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from staybook.kernel.events import Event


class IndexRebuildRequested(Event):
    """Every API process rebuilds its in-process search index from the database.

    Published by `staybook search reindex`: an in-process index lives in each API process, so
    one command reaches them all through the bus instead of one process's admin endpoint."""

    context: ClassVar[str] = "search"
    event_type: ClassVar[str] = "index.rebuild_requested"

    requested_at: datetime
