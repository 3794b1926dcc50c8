"""`staybook payments ...`: operator commands of the payments context."""

from __future__ import annotations

import asyncio

import orjson
import typer

from staybook.kernel.settings import Settings

COMMAND = "payments"
app = typer.Typer(no_args_is_help=True, help="Payments: reconcile with the provider.")


@app.command()
def reconcile() -> None:
    """Compare staybook's payments with the provider's ledger; exit 1 on any difference."""
    from staybook.kernel.runtime import Runtime
    from staybook.payments import service

    async def run() -> dict:
        runtime = Runtime(Settings())
        try:
            return await service.reconcile(runtime)
        finally:
            await runtime.db.dispose()

    report = asyncio.run(run())
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if not report["balanced"]:
        raise typer.Exit(1)
