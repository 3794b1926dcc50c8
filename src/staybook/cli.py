"""The `staybook` command: demo, serve, worker, migrate, seed, check.

Contexts add their own command groups in an optional `<context>/cli.py` that
defines `app` (a Typer) and `COMMAND` (its name), e.g. `staybook search reindex`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import orjson
import typer

from staybook import stack as stack_cli
from staybook.app import CONTEXTS, collect_wiring, configure_observability, create_app, optional_room
from staybook.kernel.settings import Settings
from staybook.recovery import cli as recovery_cli

WORKER_HEALTHCHECK_SECONDS = 60

# Exceptions leave the command as they are; main() turns them into one line (kernel/failures.py).
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="staybook: accommodation booking platform.",
)
# Set by the global --debug option: a failing command shows its traceback.
SHOW_TRACEBACKS = False
EXIT_FAILED, EXIT_BAD_CONFIGURATION = 1, 2


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"staybook {version('staybook')}")
        raise typer.Exit()


@app.callback()
def global_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the installed version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback when a command fails."),
) -> None:
    global SHOW_TRACEBACKS
    SHOW_TRACEBACKS = debug


def _settings(**overrides) -> Settings:
    """The settings from the environment; an invalid value ends the command in main() (exit 2)."""
    return Settings(**overrides)


@app.command()
def migrate(revision: str = typer.Option("heads", help="Target revision; 'heads' is the latest of every context.")):
    """Upgrade the database schema (SQLite or PostgreSQL) to the latest revision."""
    from staybook import migrate as migrations

    settings = _settings()
    migrations.upgrade(settings, revision)
    typer.echo(f"database migrated to {revision}")


@app.command()
def seed(
    properties: int = typer.Option(200, min=0, help="How many demo properties to create."),
    seed_value: int = typer.Option(7, "--seed", help="Random seed, for reproducible data."),
    allow_demo_accounts: bool = typer.Option(
        False, help="Seed even in production, where the demo accounts' published passwords would sign anyone in."
    ),
):
    """Create demo accounts (guest, host, admin, with published passwords) and properties in real cities."""
    settings = _settings()
    if settings.environment == "production" and not allow_demo_accounts:
        typer.secho(
            "refused: seeding creates admin@staybook.demo and other accounts whose passwords are published; "
            "in production pass --allow-demo-accounts to do it anyway",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    if settings.environment == "production":
        typer.secho("WARNING: demo accounts with published passwords in production", fg=typer.colors.YELLOW, err=True)
    summary = asyncio.run(_seed(settings, properties, seed_value))
    typer.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


async def _seed(settings: Settings, properties: int, seed_value: int) -> dict:
    """Calls each context's `seed.seed_demo(runtime, properties=, seed=)` in CONTEXTS order."""
    from staybook.kernel.runtime import Runtime

    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    summary: dict = {}
    try:
        for context in CONTEXTS:
            seed_demo = getattr(optional_room(context, "seed"), "seed_demo", None)
            if seed_demo is not None:
                summary[context] = await seed_demo(runtime, properties=properties, seed=seed_value)
        # The events stay in the outbox for the worker: relayed from here, before any worker's
        # consumers exist, the in-process bus would drop them (the seeded accounts would never
        # become notification contacts).
    finally:
        await runtime.close()
    return summary


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default STAYBOOK_HTTP_HOST)."),
    port: int = typer.Option(None, help="Port (default STAYBOOK_HTTP_PORT)."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes."),
    with_worker: bool = typer.Option(False, help="Also run the relay, consumers and jobs in each API process."),
):
    """Serve the HTTP API (uvicorn with uvloop + httptools)."""
    from staybook.kernel import serving

    # The port served is the port everything else names (sandbox webhooks, links in mail), also in
    # each worker process, which builds its settings from the environment.
    if host is not None:
        os.environ["STAYBOOK_HTTP_HOST"] = host
    if port is not None:
        os.environ["STAYBOOK_HTTP_PORT"] = str(port)
    settings = _settings()
    if with_worker:
        os.environ["STAYBOOK_RUN_WORKER_IN_PROCESS"] = "true"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(tempfile.mkdtemp(prefix="staybook-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Several workers: one SO_REUSEPORT socket each, so connections spread evenly (kernel/serving.py).
    serving.serve(
        "staybook.app:create_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        # uvicorn's supervisor kills a worker that does not answer its ping within this time, and a
        # worker still starting its interpreter answers none: at uvicorn's 5 s, on a loaded machine,
        # both workers were killed and respawned for minutes without ever serving.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


@app.command()
def worker(
    metrics_port: int = typer.Option(
        0,
        envvar="STAYBOOK_WORKER_METRICS_PORT",
        help="Serve the worker's own /metrics (outbox, consumers, dead letters, jobs) on this port; 0: off.",
    ),
    metrics_host: str = typer.Option("0.0.0.0", envvar="STAYBOOK_WORKER_METRICS_HOST"),  # noqa: S104 - a pod's port
):
    """Run the outbox relay, event consumers and periodic jobs until SIGTERM (on uvloop, as the API)."""
    import uvloop
    from prometheus_client import start_http_server

    settings = _settings()
    configure_observability(settings)
    if metrics_port:
        # Its own port, not the API's token-guarded /metrics: the worker serves no HTTP otherwise.
        start_http_server(metrics_port, addr=metrics_host)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from staybook.app import context_lifespans
    from staybook.kernel.runtime import Runtime
    from staybook.kernel.worker import Worker

    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    runner = Worker(runtime)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop_event.set)
    try:
        async with context_lifespans(runtime):
            try:
                await runner.run_forever()
            finally:
                await runtime.bus.close()  # no handler runs while the contexts shut down
    finally:
        await runtime.close()


@app.command("rotate-pii-key")
def rotate_pii_key(batch_size: int = typer.Option(500, min=1, help="Rows re-sealed per transaction.")):
    """Move every piece of personal data to the active PII master key: identity's data keys are
    re-wrapped, and what other contexts sealed (a booking's guest, a message's recipient) is re-sealed.

    Rotation without downtime: set the new key as STAYBOOK_IDENTITY__PII_MASTER_KEY with a
    new STAYBOOK_IDENTITY__PII_MASTER_KEY_ID, keep the old one in
    STAYBOOK_IDENTITY__PII_PREVIOUS_MASTER_KEYS='{"<old id>": "<old key>"}', roll the
    API processes and workers, run this command, then drop the old key.
    """
    from staybook.identity import bootstrap as identity_bootstrap
    from staybook.identity.privacy import rotate_pii_keys
    from staybook.kernel.runtime import Runtime

    async def run() -> dict[str, int]:
        runtime = Runtime(_settings(), collect_wiring())
        await runtime.start()
        credentials = identity_bootstrap.build(runtime)
        try:
            counts = {"identity": await rotate_pii_keys(runtime, credentials, batch_size)}
            for context, reseal in runtime.wiring.personal_data_reseals.items():
                counts[context] = await reseal(runtime, batch_size)
            return counts
        finally:
            await credentials.close()
            await runtime.close()

    for context, count in asyncio.run(run()).items():
        typer.echo(f"{context}: {count} re-sealed")


@app.command()
def check():
    """Print the effective configuration (secrets masked), test every configured connection, and check
    that the schema is migrated to the latest revision of every context."""
    settings = _settings()
    typer.echo(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    failures = asyncio.run(_check_connections(settings))
    if settings.environment == "production":
        failures.extend(_production_failures(settings))
    if failures:
        for failure in failures:
            typer.secho(f"FAILED {failure}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.secho("all checks passed", fg=typer.colors.GREEN)


def _production_failures(settings: Settings) -> list[str]:
    """What must not be left as the demo has it: its secret, open metrics, its accounts."""
    failures = []
    if settings.uses_demo_secrets():
        failures.append(
            "secrets: the demo secret is in use; set STAYBOOK_SECRET_KEY, STAYBOOK_JWT_KEYS, "
            "STAYBOOK_PAYMENTS__WEBHOOK_SECRET"
        )
    if settings.metrics.token is None:
        failures.append("metrics: set STAYBOOK_METRICS__TOKEN (/metrics answers only scrapers that send it)")
    try:
        demo_accounts = asyncio.run(_demo_accounts_in_use(settings))
    except Exception as error:  # an unreachable or unmigrated database is reported by its own check
        typer.echo(f"skip   demo accounts ({type(error).__name__})")
    else:
        if demo_accounts:
            failures.append(
                f"demo accounts: {', '.join(demo_accounts)} sign in with their published passwords; "
                "change their passwords or erase them"
            )
    return failures


async def _demo_accounts_in_use(settings: Settings) -> list[str]:
    from staybook.identity.seed import demo_accounts_in_use
    from staybook.kernel.db import Database

    database = Database(settings)
    try:
        async with database.session() as session:
            return await demo_accounts_in_use(session, settings)
    finally:
        await database.dispose()


class SchemaBehind(RuntimeError):
    pass


async def _schema_at_heads(settings: Settings) -> None:
    from staybook import migrate as migrations

    applied = await migrations.applied_revisions(settings)
    if not applied:
        raise SchemaBehind("the database was never migrated; run `staybook migrate`")
    behind = migrations.branches_behind(settings, applied)
    if behind:
        raise SchemaBehind("; ".join(behind) + "; run `staybook migrate`")


async def _check_connections(settings: Settings) -> list[str]:
    from staybook.kernel.db import Database, ping

    failures: list[str] = []

    async def attempt(name: str, probe) -> None:
        try:
            await asyncio.wait_for(probe(), timeout=5)
            typer.echo(f"ok     {name}")
        except Exception as error:
            failures.append(f"{name}: {type(error).__name__}: {error}")

    database = Database(settings)
    await attempt(f"database ({database.dialect})", lambda: ping(database.engine))
    await database.dispose()
    if not failures:
        await attempt("schema at the latest migrations", lambda: _schema_at_heads(settings))
    for region, config in settings.regions.items():
        # Where that region's users' personal data is stored (docs/operations/recovery.md).
        regional = settings.model_copy(update={"database_url": config.database_url, "database_replica_url": None})
        await attempt(f"region {region} database and schema", lambda regional=regional: _schema_at_heads(regional))
    if settings.redis_url:
        import redis.asyncio as redis

        client = redis.from_url(settings.redis_url, socket_connect_timeout=3)
        await attempt("redis", client.ping)
        await client.aclose()
    if settings.nats_url:

        async def nats_probe() -> None:
            import nats

            nc = await nats.connect(
                settings.nats_url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False
            )
            try:
                await nc.jetstream().account_info()
            finally:
                await nc.close()

        await attempt("nats jetstream", nats_probe)
    if settings.typesense_url:

        async def typesense_probe() -> None:
            import httpx

            async with httpx.AsyncClient(timeout=3) as client:
                response = await client.get(settings.typesense_url.rstrip("/") + "/health")
                response.raise_for_status()

        await attempt("typesense", typesense_probe)
    if settings.search.backend == "typesense":

        async def typesense_client() -> None:
            importlib.import_module("staybook.search.typesense")  # without the extra: names it

        await attempt("typesense client", typesense_client)

    from staybook.catalog.media import media_store

    async def media_probe() -> None:
        store = media_store(settings.catalog)
        try:
            await store.ping()
        finally:
            await store.close()

    bucket = settings.catalog.s3_bucket
    await attempt(f"photo store ({f's3 bucket {bucket}' if bucket else 'local directory'})", media_probe)
    return failures


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port on 127.0.0.1 (0 picks a free one)."),
    properties: int = typer.Option(300, min=0, help="Demo properties to seed on first start."),
    data_dir: Path = typer.Option(Path("./staybook-demo"), help="Where the demo keeps its SQLite file and media."),
    fresh: bool = typer.Option(False, help="Delete earlier demo data first."),
):
    """Everything embedded: migrate a SQLite file, seed demo data, serve API + worker on 127.0.0.1."""
    from staybook.kernel import serving

    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    # The port served is the one sandbox webhooks go to and mail links name.
    os.environ["STAYBOOK_HTTP_HOST"] = "127.0.0.1"
    os.environ["STAYBOOK_HTTP_PORT"] = str(port)
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    db_file = data_dir / "staybook.db"
    first_start = not db_file.exists()
    os.environ.setdefault("STAYBOOK_DATABASE_URL", f"sqlite+aiosqlite:///{db_file.resolve()}")
    os.environ.setdefault("STAYBOOK_CATALOG__MEDIA_DIR", str((data_dir / "media").resolve()))
    os.environ["STAYBOOK_RUN_WORKER_IN_PROCESS"] = "true"
    settings = _settings()
    if settings.environment == "production":
        typer.secho(
            "refused: the demo seeds accounts with published passwords; it is not for STAYBOOK_ENVIRONMENT=production",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    from staybook import migrate as migrations

    migrations.upgrade(settings)
    if first_start:
        typer.echo(f"seeding {properties} demo properties ...")
        asyncio.run(_seed(settings, properties, 7))
    url = f"http://127.0.0.1:{port}"
    banner = [f"staybook demo on {url}  (API docs {url}/docs, health {url}/healthz/ready)"]
    banner += _demo_account_lines(settings)
    if not first_start:
        banner.append("  (existing demo data kept; --fresh starts over)")
    typer.echo("starting: building the search index ...")
    finished = threading.Event()
    threading.Thread(
        target=_announce_when_serving, args=(port, banner, finished), name="demo-banner", daemon=True
    ).start()
    try:
        serving.serve(
            create_app(settings),
            workers=1,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
        )
    finally:
        finished.set()  # the server stopped (or never started): nothing more to announce


def _demo_account_lines(settings: Settings) -> list[str]:
    """The demo accounts that still sign in with their published passwords, on every start."""
    from staybook.identity.seed import DEMO_ACCOUNTS

    in_use = set(asyncio.run(_demo_accounts_in_use(settings)))
    lines = [
        f"  demo {role}: {email} / {password}" for role, email, _, password in DEMO_ACCOUNTS if email in in_use
    ]
    if lines:
        lines.append("  (published passwords: `staybook seed` refuses them in production without --allow-demo-accounts)")  # noqa: E501
    return lines


def _announce_when_serving(port: int, banner: list[str], done: threading.Event) -> None:
    """Prints the search index build's progress until the server answers, then the banner: a URL
    printed earlier would refuse connections for as long as the index takes to build."""
    from staybook.search.service import build_progress

    shown = None
    while not done.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            pass
        progress = ", ".join(f"{stage} {read:,}/{total:,}" for stage, read, total in build_progress())
        if progress and progress != shown:
            typer.echo(f"  search index: {progress}")
            shown = progress
        done.wait(1)
    else:
        return
    for line in banner:
        typer.echo(line)
    sys.stdout.flush()
    done.set()


def _add_context_commands() -> None:
    for context in CONTEXTS:
        try:
            module = importlib.import_module(f"staybook.{context}.cli")
        except ModuleNotFoundError as error:
            if error.name == f"staybook.{context}.cli":
                continue
            raise
        app.add_typer(module.app, name=getattr(module, "COMMAND", context))


_add_context_commands()
recovery_cli.register(app)
app.add_typer(stack_cli.app, name=stack_cli.COMMAND)


def main() -> None:
    from pydantic import ValidationError

    from staybook.kernel.failures import describe

    try:
        app()
    except Exception as error:
        if SHOW_TRACEBACKS:
            raise
        typer.secho(f"error: {describe(error)}  (--debug shows the traceback)", fg=typer.colors.RED, err=True)
        sys.exit(EXIT_BAD_CONFIGURATION if isinstance(error, ValidationError) else EXIT_FAILED)


if __name__ == "__main__":
    main()
