"""`staybook personalization ...`: train the model from the signal archive."""

from __future__ import annotations

import asyncio

import orjson
import typer

from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings
from staybook.personalization import service

COMMAND = "personalization"
app = typer.Typer(no_args_is_help=True, help="Personalisation: train the recommendation model.")


@app.command()
def train() -> None:
    """Fit the implicit-feedback model and the content vectors from the Parquet archive.

    Writes a new version under `personalization.model_dir` and points CURRENT at it; running
    API processes load it within seconds, without a restart.
    """
    manifest = asyncio.run(_train(Settings()))
    typer.echo(orjson.dumps(manifest).decode())


async def _train(settings: Settings) -> dict:
    runtime = Runtime(settings)
    try:
        return await service.train(runtime)
    finally:
        await runtime.close()
