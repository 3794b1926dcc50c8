"""`staybook notify ...`: look at notifications without sending them."""

from __future__ import annotations

import typer

from staybook.notifications.policy import LOCALES, TYPES
from staybook.notifications.previews import SAMPLES
from staybook.notifications.templates import Templates

COMMAND = "notify"
app = typer.Typer(no_args_is_help=True, help="Notification templates: preview and check.")


@app.command()
def preview(
    type_name: str = typer.Argument(..., metavar="TYPE", help=f"One of: {', '.join(TYPES)}"),
    locale: str = typer.Option("en", help=f"One of: {', '.join(LOCALES)}"),
    html: bool = typer.Option(False, "--html", help="Print the HTML part instead of subject, text and short text."),
):
    """Render a notification type with sample data."""
    if type_name not in TYPES:
        typer.secho(f"unknown type {type_name!r}; one of: {', '.join(TYPES)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if locale not in LOCALES:
        typer.secho(f"unknown locale {locale!r}; one of: {', '.join(LOCALES)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    unsubscribe = None if TYPES[type_name].transactional else "https://staybook.example/unsubscribe?token=preview"
    message = Templates().render(type_name, locale, SAMPLES[type_name], unsubscribe_url=unsubscribe)
    if html:
        typer.echo(message.html)
        return
    typer.echo(f"Subject: {message.subject}\n\n{message.text}")
    if message.short:
        typer.echo(f"SMS/push: {message.short}")


@app.command()
def check():
    """Render every type in every locale (what start-up does); non-zero exit if one fails."""
    typer.echo(f"{Templates().check()} templates render")
