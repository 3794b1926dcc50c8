"""`staybook identity ...`: operator commands of the identity context."""

from __future__ import annotations

import asyncio

import typer

from staybook.kernel.settings import Settings

COMMAND = "identity"
app = typer.Typer(no_args_is_help=True, help="Accounts and personal data: key rotation.")


@app.command("rotate-pii-key")
def rotate_pii_key(batch_size: int = typer.Option(500, min=1, help="Users re-wrapped per transaction.")):
    """Re-wrap every user's data key with the active PII master key.

    Rotation without downtime: set the new key as STAYBOOK_IDENTITY__PII_MASTER_KEY with a
    new STAYBOOK_IDENTITY__PII_MASTER_KEY_ID, keep the old one in
    STAYBOOK_IDENTITY__PII_PREVIOUS_MASTER_KEYS='{"<old id>": "<old key>"}', roll the
    API processes, run this command, then drop the old key.
    """
    from staybook.identity.service import rotate_pii_keys
    from staybook.kernel.runtime import Runtime

    async def run() -> int:
        runtime = Runtime(Settings())
        await runtime.start()
        try:
            return await rotate_pii_keys(runtime, batch_size)
        finally:
            await runtime.close()

    count = asyncio.run(run())
    typer.echo(f"re-wrapped {count} data keys")


@app.command("new-pii-key")
def new_pii_key():
    """Print a fresh random master key (urlsafe base64, 32 bytes)."""
    from staybook.identity.pii import new_master_key

    typer.echo(new_master_key())
