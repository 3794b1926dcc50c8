"""`staybook backup`, `staybook restore` and `staybook dr`: the operator's recovery commands.

They run on the database host, as root or as the cluster owner, with the
`STAYBOOK_BACKUP__*` settings (docs/operations/recovery.md).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from datetime import datetime
from pathlib import Path

import typer

from staybook.kernel.settings import Settings
from staybook.recovery.pgbackrest import BACKUP_TYPES, Repository
from staybook.recovery.postgres import LocalCluster, RecoveryError

backup_app = typer.Typer(
    no_args_is_help=False, invoke_without_command=True, help="Backups of the database (pgBackRest)."
)
dr_app = typer.Typer(no_args_is_help=True, help="Standbys, failover and the DR drill.")


def _repository() -> Repository:
    """The configured repository, its pgBackRest configuration written."""
    repository = Repository(Settings().backup)
    repository.write_config()
    return repository


def _primary(repository: Repository, data_dir: Path | None = None, port: int | None = None) -> LocalCluster:
    """The cluster `backup.pg_*` describe, or the one in `data_dir` on `port`."""
    settings = repository.settings
    return LocalCluster((data_dir or repository.pg_data_dir).resolve(), port or settings.pg_port,
                        owner=settings.pg_owner, socket_dir=Path(settings.pg_socket_dir))  # fmt: skip


def _failing_cleanly(command):
    """A RecoveryError ends the command with one red line and exit code 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RecoveryError as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from error

    return run


def _echo(line: str) -> None:
    typer.echo(line.rstrip())


def _moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 moment with its UTC offset, or a clear error naming the option."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        typer.secho(f"{option} must be ISO 8601 with a UTC offset, e.g. 2027-01-01T12:00:00+00:00",
                    fg=typer.colors.RED, err=True)  # fmt: skip
        raise typer.Exit(2)
    return moment


@backup_app.callback()
@_failing_cleanly
def backup(
    context: typer.Context,
    kind: str = typer.Option("full", "--type", help=f"One of {', '.join(BACKUP_TYPES)}."),
):
    """Take a backup (full, differential or incremental) of the primary, with progress."""
    if context.invoked_subcommand is not None:
        return
    repository = _repository()
    repository.backup(kind, progress=_echo)


@backup_app.command("init")
@_failing_cleanly
def backup_init(apply: bool = typer.Option(False, help="Also set the archiving parameters with ALTER SYSTEM.")):
    """Write pgBackRest's configuration, create the stanza, and print (or apply) the server's archiving settings."""
    repository = _repository()
    typer.echo(f"wrote {repository.config_file} (mode 0600: it holds the backup passphrase)")
    parameters = repository.server_parameters()
    if apply:
        with _primary(repository).connect() as conn:
            for name, value in parameters.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        typer.echo("archiving parameters set; restart PostgreSQL once for archive_mode to apply")
    else:
        typer.echo("set these in postgresql.conf (archive_mode needs a restart):")
        for name, value in parameters.items():
            typer.echo(f"  {name} = '{value}'")
    repository.create_stanza(progress=_echo)


@backup_app.command("verify")
@_failing_cleanly
def backup_verify():
    """Check every backup and archived WAL segment in the repository (checksums, continuity)."""
    repository = _repository()
    repository.verify(progress=_echo)
    typer.secho("repository verified", fg=typer.colors.GREEN)


@backup_app.command("info")
@_failing_cleanly
def backup_info():
    """List the backups in the repository, oldest first, as JSON."""
    repository = _repository()
    typer.echo(json.dumps(repository.backups(), indent=2))


@backup_app.command("photos")
@_failing_cleanly
def backup_photos():
    """Snapshot the local photo directory, encrypted (S3 deployments rely on bucket versioning instead)."""
    from staybook.recovery import photos

    settings = Settings()
    passphrase = _passphrase(settings)
    summary = photos.snapshot(settings.catalog.media_dir, _photo_snapshots(settings), passphrase)
    removed = photos.expire(_photo_snapshots(settings), settings.backup.retention_full_days)
    typer.echo(json.dumps({**summary, "expired": removed}))


@backup_app.command("photos-restore")
@_failing_cleanly
def backup_photos_restore(
    label: str = typer.Option(None, help="Snapshot to restore (default: the newest)."),
    into: Path = typer.Option(..., help="Empty directory to write the photos into."),
):
    """Restore a photo snapshot into an empty directory; point STAYBOOK_CATALOG__MEDIA_DIR at it."""
    from staybook.recovery import photos

    settings = Settings()
    snapshots = _photo_snapshots(settings)
    chosen = label or (photos.labels(snapshots) or [None])[-1]
    if chosen is None:
        raise RecoveryError(f"no photo snapshots in {snapshots}")
    count = photos.restore(snapshots, chosen, into, _passphrase(settings))
    typer.secho(f"restored {count} files of snapshot {chosen} into {into}", fg=typer.colors.GREEN)


def _photo_snapshots(settings: Settings) -> Path:
    return settings.backup.work_dir.resolve() / "photos"


def _passphrase(settings: Settings) -> str:
    if settings.backup.cipher_pass is None:
        raise RecoveryError("backups are encrypted: set STAYBOOK_BACKUP__CIPHER_PASS")
    return settings.backup.cipher_pass.get_secret_value()


@_failing_cleanly
def restore(
    target_time: str = typer.Option(None, help="Recover to this moment (ISO 8601 with offset)."),
    target_latest: bool = typer.Option(False, help="Recover to the end of the archived WAL."),
    data_dir: Path = typer.Option(None, help="Restore into this directory (default: backup.pg_data_dir)."),
    port: int = typer.Option(None, help="Port of the restored cluster (default: as backed up)."),
    force: bool = typer.Option(False, help="Stop a PostgreSQL running in the target directory first."),
):
    """Restore the database from the repository to a point in time or to the latest archived WAL."""
    if (target_time is None) == (not target_latest):
        typer.secho("give exactly one of --target-time and --target-latest", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    moment = _moment(target_time, "--target-time")
    repository = _repository()
    cluster = _primary(repository, data_dir, port)
    target = cluster.data_dir
    if cluster.running:
        if not force:
            typer.secho(
                f"refusing to restore over the PostgreSQL running in {target} (pid {cluster.pid}); "
                "stop it first or pass --force",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"stopping the PostgreSQL running in {target}")
        cluster.stop()
    repository.restore(target, target_time=moment, port=port, progress=_echo)
    typer.secho(f"restored into {target}; start PostgreSQL there to replay WAL and promote", fg=typer.colors.GREEN)


@dr_app.command("standby")
@_failing_cleanly
def dr_standby(
    data_dir: Path = typer.Option(..., help="Directory of the new standby."),
    port: int = typer.Option(..., help="Port of the new standby."),
    name: str = typer.Option("standby1", help="Replication slot and application name."),
    synchronous: bool = typer.Option(False, help="Commits on the primary wait for this standby (RPO 0)."),
):
    """Make a streaming hot standby of the primary (backup.pg_data_dir / pg_port) and start it."""
    primary = _primary(Repository(Settings().backup))
    standby = primary.make_standby(data_dir.resolve(), port, name=name, synchronous=synchronous)
    mode = "synchronous" if synchronous else "asynchronous"
    typer.secho(f"{mode} standby '{name}' streaming on 127.0.0.1:{standby.port}", fg=typer.colors.GREEN)


@dr_app.command("promote")
@_failing_cleanly
def dr_promote(
    data_dir: Path = typer.Option(..., help="Directory of the standby to promote."),
    port: int = typer.Option(..., help="Its port."),
):
    """Promote a standby to primary (fail over); point STAYBOOK_DATABASE_URL at it afterwards."""
    standby = LocalCluster(data_dir.resolve(), port)
    standby.promote()
    typer.secho(f"promoted: 127.0.0.1:{port} is the primary", fg=typer.colors.GREEN)


@dr_app.command("republish")
@_failing_cleanly
def dr_republish(
    since: str = typer.Option(..., help="Events published at or after this moment go out again (ISO 8601)."),
):
    """Publish again the outbox's events since a moment, after the bus lost a stream.

    Consumers' inboxes drop what they had handled already, so this is safe to overdo:
    pick a moment before the stream loss. Events older than the outbox retention are gone.
    """
    import asyncio as _asyncio

    from staybook.kernel.db import Database

    settings = Settings()
    moment = _moment(since, "--since")

    async def run() -> int:
        from sqlalchemy import update

        from staybook.kernel.models import OutboxMessage

        database = Database(settings)
        try:
            async with database.sessions() as session, session.begin():
                result = await session.execute(
                    update(OutboxMessage).where(OutboxMessage.published_at >= moment).values(published_at=None)
                )
                return result.rowcount or 0
        finally:
            await database.dispose()

    count = _asyncio.run(run())
    typer.secho(f"{count} events will be published again by the relay", fg=typer.colors.GREEN)


@dr_app.command("drill")
@_failing_cleanly
def dr_drill(
    mode: str = typer.Option("async_standby", help="sync_standby, async_standby or wal_archive."),
    bookings: int = typer.Option(1000, min=1, help="Confirmed bookings loaded before the base backup."),
    rate: float = typer.Option(10.0, min=0.5, help="Booking flows started per second during the drill."),
    base_dir: Path = typer.Option(Path("./staybook-dr"), help="Where the drill's clusters live (deleted after)."),
    first_port: int = typer.Option(25400, help="The drill takes free ports from here."),
    archive_timeout: int = typer.Option(10, min=1, help="archive_timeout of the primary, in seconds."),
    nats_url: str = typer.Option(None, help="NATS JetStream for the drill's events (default: in-process bus)."),
    output: Path = typer.Option(None, help="Write the result as JSON here."),
):
    """Kill the primary under booking load, recover, and measure RPO, RTO and the invariants."""
    from staybook.recovery.drill import DrillOptions, result_dict, run_drill

    options = DrillOptions(
        mode=mode,
        bookings=bookings,
        rate_per_s=rate,
        base_dir=base_dir,
        first_port=first_port,
        archive_timeout_s=archive_timeout,
        nats_url=nats_url,
    )
    result = asyncio.run(run_drill(options, progress=typer.echo))
    document = result_dict(result)
    typer.echo(json.dumps(document, indent=2, default=str))
    if output is not None:
        output.write_text(json.dumps(document, indent=2, default=str) + os.linesep)
    if not result.invariants_ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds the recovery commands to the `staybook` command."""
    app.add_typer(backup_app, name="backup")
    app.command("restore")(restore)
    app.add_typer(dr_app, name="dr")
