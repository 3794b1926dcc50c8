"""`staybook search ...`: rebuild the search index from the database."""

from __future__ import annotations

import asyncio

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings
from staybook.search import service
from staybook.search.service import SearchDeps

COMMAND = "search"
app = typer.Typer(no_args_is_help=True, help="Search index: rebuild from the database.")


@app.command()
def reindex() -> None:
    """Rebuild the search index from what the catalog and inventory services list, online.

    With Typesense (STAYBOOK_SEARCH__BACKEND=typesense) the documents go into a new
    collection and the alias switches to it in one step: API processes keep answering
    from the old collection until then. Every API process also keeps an in-process index
    (all of it with the default backend, the availability part with Typesense); the command
    asks them all to rebuild it through the bus (`search.index.rebuild_requested`), and
    each keeps answering from its old index until its new one is swapped in.
    """
    settings = Settings()
    counts = asyncio.run(_reindex(settings))
    typer.echo(orjson.dumps({"backend": settings.search.backend, **counts, "api_rebuild_requested": True}).decode())


async def _reindex(settings: Settings) -> dict[str, int]:
    runtime = Runtime(settings)
    await runtime.start()
    deps = SearchDeps(runtime)  # no lifespan: this process serves no searches, it builds one index
    try:
        if settings.search.backend == "typesense":
            counts = await _rebuild_typesense(deps)
        else:
            counts = await service.source_counts(runtime)
        await service.request_rebuild(runtime)
        return counts
    finally:
        if deps.index is not None:
            await deps.index.close()
        await runtime.close()


async def _rebuild_typesense(deps: SearchDeps) -> dict[str, int]:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        return await service.reindex(deps, report)
