"""`staybook payments ...`: operator commands of the payments context."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import typer

from staybook.kernel.settings import Settings

COMMAND = "payments"
app = typer.Typer(no_args_is_help=True, help="Payments: reconcile with the provider.")


@app.command()
def reconcile(
    since: datetime | None = typer.Option(None, help="Only payments and charges created since (ISO, UTC)."),
) -> None:
    """Compare staybook's payments with the provider's books; exit 1 on any difference."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    from staybook.kernel.runtime import Runtime
    from staybook.payments import bootstrap, service

    async def run() -> dict:
        runtime = Runtime(Settings())
        try:
            async with bootstrap.lifespan(runtime) as deps:  # the configured provider, closed afterwards
                return await service.reconcile(runtime, deps.provider, since)
        finally:
            await runtime.db.dispose()

    report = asyncio.run(run())
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if not report["balanced"]:
        raise typer.Exit(1)
