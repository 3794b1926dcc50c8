"""`staybook identity ...`: operator commands of the identity context."""

from __future__ import annotations

import typer

COMMAND = "identity"
app = typer.Typer(
    no_args_is_help=True, help="Accounts and personal data: master keys (rotate with `staybook rotate-pii-key`)."
)


@app.command("new-pii-key")
def new_pii_key():
    """Print a fresh random master key (urlsafe base64, 32 bytes)."""
    from staybook.identity.pii import new_master_key

    typer.echo(new_master_key())
