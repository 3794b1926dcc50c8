"""`staybook search ...`: rebuild the search index from the database."""

from __future__ import annotations

import asyncio

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings
from staybook.search import service

COMMAND = "search"
app = typer.Typer(no_args_is_help=True, help="Search index: rebuild from the database.")


@app.command()
def reindex() -> None:
    """Rebuild the search index from what the catalog and inventory services list, online.

    With Typesense (STAYBOOK_SEARCH__BACKEND=typesense) the documents go into a new
    collection and the alias switches to it in one step: API processes keep answering
    from the old collection until then. The in-process index lives in each API process;
    they build it at start and rebuild on `POST /api/v1/search/reindex` (admin) — this
    command then checks that the database reads cleanly and reports what it holds.
    """
    settings = Settings()
    counts = asyncio.run(_reindex(settings))
    typer.echo(orjson.dumps({"backend": settings.search.backend, **counts}).decode())


async def _reindex(settings: Settings) -> dict[str, int]:
    runtime = Runtime(settings)
    await runtime.start()
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done)

            return await service.reindex(runtime, report)
    finally:
        index = runtime.extensions.get(service.INDEX)
        if index is not None:
            await index.close()
        await runtime.close()
