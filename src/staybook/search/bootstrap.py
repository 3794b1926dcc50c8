"""Builds the search context's parts for one process: the index, kept current from events.

`lifespan(runtime)` yields `SearchDeps` (the index, the ranker, the observers, the response
caches); routes read it through `SearchDep`, and the search fast path takes it from
`runtime.context_deps` once per request. Personalisation, above search, sets its ranker and
adds its observer on these deps in its own lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends

from staybook.kernel.consumers import ReplicaSubscription
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.search import service
from staybook.search.events import IndexRebuildRequested
from staybook.search.service import SearchDeps

log = structlog.get_logger("staybook.search")

CONTEXT = "search"
SearchDep = Annotated[SearchDeps, Depends(context_dependency(CONTEXT))]


def search_deps(runtime: Runtime) -> SearchDeps:
    """This process's search deps, for the lifespans of contexts above search (entered after it)."""
    return runtime.context_deps[CONTEXT]


async def on_index_event(envelope: EventEnvelope, deps: SearchDeps) -> None:
    await service.on_index_event(deps, envelope)


async def on_rebuild_requested(envelope: EventEnvelope, deps: SearchDeps) -> None:
    service.schedule_rebuild(deps)


def replica_subscriptions(deps: SearchDeps) -> list[ReplicaSubscription]:
    """Every API process keeps its own index current; handlers are idempotent (no inbox)."""
    return [
        *(
            ReplicaSubscription(f"search.index.{n}", subject, on_index_event, deps=deps)
            for n, subject in enumerate(service.SUBJECTS)
        ),
        ReplicaSubscription("search.rebuild", IndexRebuildRequested.subject(), on_rebuild_requested, deps=deps),
    ]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[SearchDeps]:
    """Builds this process's index from the database, then keeps it current from events.

    Subscribes before reading the database so no event falls between the read and the
    subscription; events received during the read are replayed onto the new index. If the
    database cannot be read at start, the process still starts (readiness says why) and
    keeps retrying in the background.
    """
    deps = SearchDeps(runtime)
    deps.index = service.new_index(deps)
    deps.rebuilding = []
    await runtime.consumers.start(replica_subscriptions(deps))
    retrying = None
    try:
        await service.reindex(deps, rebuild_documents=False)
    except Exception as error:
        log.warning("search index not built; retrying in the background", error_type=type(error).__name__)
        deps.build_error = f"{type(error).__name__}: {error}"
        retrying = asyncio.get_running_loop().create_task(service.build_until_done(deps), name="search-build")
    if retrying is not None or runtime.settings.search.backend == "typesense":
        runtime.add_ready_check("search", lambda: service.ready(deps))
    try:
        yield deps
    finally:
        for task in (retrying, deps.rebuild_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await deps.index.close()
