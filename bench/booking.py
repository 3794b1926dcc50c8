"""Full hold -> pay -> confirm over HTTP against PostgreSQL, and the pgbench ceiling of the bare hold.

One `staybook serve --workers <cores>` (uvicorn, uvloop + httptools; `--server-cpu` pins it)
on a fresh PostgreSQL database, the sandbox provider in instant mode (no simulated latency,
no webhooks; its ledger is still written). This process is the load generator (`--client-cpu`
pins it): open loop, a booking flow starts every 1/rate s whatever happened before; the hold's latency
counts from its scheduled start (no coordinated omission), the payment's from the moment
the hold answered, end-to-end from the scheduled start.

Two variants: `spread` (guests over many room types) and `hotspot` (all guests on 10 room
types, so holds queue on the same room-night rows). Each steps its arrival rate up
(`--rates`) until the end-to-end p99 reaches 150 ms or a flow is lost (twice in a row: a
failed step is run once more); the last rate below that is the variant's sustained rate,
and its confirmed/s over the pgbench ceiling is the ratio. In the same run, pgbench runs
the bare hold transaction (3-night conditional UPDATE of room_nights + INSERT) on the
same tables: the ceiling any HTTP path can approach. The server runs as many uvicorn
workers as the machine has cores; its CPU (all workers) per confirmed booking is
recorded at every step.

A `staybook worker` (outbox relay, consumers: notifications rendering and writing mail,
search, payments) runs beside the server, as in production. Every step splits the CPU
spent per confirmed booking by process: the API workers, the worker, the PostgreSQL
backends of the bench database (plus the cluster's shared WAL writer, checkpointer and
autovacuum, which other databases on the machine also use) and this load generator; and
records the outbox backlog the worker had left at the end of the step. The worker runs on
NATS JetStream as in production when NATS answers at 127.0.0.1:4222 (`STAYBOOK_BENCH_NATS_URL`),
under a namespace of its own whose streams are deleted at the end; otherwise, or with
`--bus in-process`, on the in-process bus. The results record which (`bus`).

    flock /tmp/staybook-bench.lock .venv/bin/python -m bench.booking [--rates 10,20,40] [--duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import psycopg

from bench.harness import Server, free_port, ratio, staybook_command, stop_process, write_result
from staybook import migrate
from staybook.kernel.bus import delete_namespace_streams
from staybook.kernel.security import TokenSigner
from staybook.kernel.settings import Settings

ADMIN_URL = os.environ.get("STAYBOOK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "staybook_bench_booking"
START = date.today() + timedelta(days=30)
CALENDAR_DAYS = 60


# ------------------------------------------------------------------ database


def fresh_database() -> tuple[str, str]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    plain = f"{base}/{DATABASE}"
    migrate.upgrade(Settings(database_url=plain, environment="test"))
    return plain, plain.replace("postgresql://", "postgresql+asyncpg://")


def seed(url: str, count: int, units: int) -> list[str]:
    """`count` active room types (one property each) with a calendar of CALENDAR_DAYS nights."""
    room_types = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY properties (id, host_id, name, description, property_type, address, city, country, latitude,"
            " longitude, timezone, currency, amenities, check_in_time, check_out_time, cancellation_policy, status,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            for i, _ in enumerate(room_types):
                copy.write_row(
                    (
                        uuid.UUID(int=i + 1),
                        uuid.uuid4(),
                        f"Bench {i}",
                        "",
                        "hotel",
                        "1 Main St",
                        "Lisbon",
                        "PT",
                        38.7,
                        -9.1,
                        "Europe/Lisbon",
                        "EUR",
                        "[]",
                        "15:00",
                        "11:00",
                        "moderate",
                        "active",
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:00Z",
                    )
                )
        with cur.copy(
            "COPY room_types (id, property_id, name, description, max_guests, beds, units, base_price_amount,"
            " currency, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i, room_type in enumerate(room_types):
                copy.write_row(
                    (
                        room_type,
                        uuid.UUID(int=i + 1),
                        "Double",
                        "",
                        4,
                        2,
                        units,
                        12_000,
                        "EUR",
                        "active",
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:00Z",
                    )
                )
        with cur.copy(
            "COPY room_nights (room_type_id, night, property_id, total, held, booked, price_amount, currency,"
            " min_stay, closed, closed_to_arrival) FROM STDIN"
        ) as copy:
            for i, room_type in enumerate(room_types):
                for day in range(CALENDAR_DAYS):
                    copy.write_row(
                        (
                            room_type,
                            START + timedelta(days=day),
                            uuid.UUID(int=i + 1),
                            units,
                            0,
                            0,
                            12_000,
                            "EUR",
                            1,
                            False,
                            False,
                        )
                    )
        cur.execute("CREATE TABLE bench_room_types (i int PRIMARY KEY, id uuid NOT NULL)")
        cur.executemany("INSERT INTO bench_room_types VALUES (%s, %s)", list(enumerate(room_types, 1)))
        cur.execute(
            "CREATE TABLE bench_holds (id bigserial PRIMARY KEY, room_type_id uuid NOT NULL, check_in date NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("ANALYZE")
    return room_types


# ------------------------------------------------------------------ pgbench ceiling

PGBENCH_SCRIPT = """\\set i random(1, {count})
\\set d random(0, {last_day})
BEGIN;
UPDATE room_nights SET held = held + 1
  WHERE room_type_id = (SELECT id FROM bench_room_types WHERE i = :i)
    AND night >= DATE '{start}' + :d AND night < DATE '{start}' + :d + 3
    AND total - held - booked >= 1 AND NOT closed;
INSERT INTO bench_holds (room_type_id, check_in)
  VALUES ((SELECT id FROM bench_room_types WHERE i = :i), DATE '{start}' + :d);
END;
"""


def pgbench(url: str, count: int, *, clients: int = 8, seconds: int = 10) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)  # noqa: SIM115
    script.write(PGBENCH_SCRIPT.format(count=count, last_day=CALENDAR_DAYS - 4, start=START.isoformat()))
    script.close()
    try:
        output = subprocess.run(
            ["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", output).group(1))
    with psycopg.connect(url, autocommit=True) as conn:  # give the bench's units back for the HTTP run
        conn.execute("UPDATE room_nights SET held = 0 WHERE held > 0")
        conn.execute("TRUNCATE bench_holds")
    return {
        "tps": tps,
        "latency_avg_ms": latency,
        "clients": clients,
        "seconds": seconds,
        "transaction": "3-night conditional UPDATE of room_nights + INSERT, one room type of " + str(count),
    }


# ------------------------------------------------------------------ HTTP client


class Connection:
    """Raw HTTP/1.1 keep-alive connection that returns status and body (the flow needs the booking id)."""

    # uvicorn closes keep-alive connections idle for 5 s; reopen before that instead of failing.
    MAX_IDLE_S = 4.0

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.last_used = 0.0

    async def request(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        if self.writer is not None and time.perf_counter() - self.last_used > self.MAX_IDLE_S:
            self.writer.close()
            self.writer = None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", response).group(1))
        payload = await self.reader.readexactly(length)
        self.last_used = time.perf_counter()
        return status, payload


async def drive(
    url: str,
    room_types: list[str],
    tokens: list[str],
    *,
    rate: float,
    duration: float,
    connections: int,
    seed_value: int,
) -> dict:
    host, port = url.removeprefix("http://").split(":")
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(Connection(host, int(port)))
    rng = random.Random(seed_value)
    hold_ms, pay_ms, flow_ms = [], [], []
    statuses: dict[str, int] = {}
    confirmed = errors = 0

    async def call(method: str, path: str, headers: dict, body: dict) -> tuple[int, bytes]:
        connection = await idle.get()
        try:
            return await connection.request(method, path, headers, json.dumps(body).encode())
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
            connection.writer = None
            raise
        finally:
            idle.put_nowait(connection)

    async def flow(scheduled: float, room_type: str, check_in: date, nights: int, token: str) -> None:
        nonlocal confirmed, errors
        auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        try:
            status, body = await call(
                "POST",
                "/api/v1/bookings",
                auth,
                {
                    "room_type_id": room_type,
                    "check_in": check_in.isoformat(),
                    "check_out": (check_in + timedelta(days=nights)).isoformat(),
                    "guests": 2,
                    "guest": {"name": "Bench Guest", "email": "bench@example.com"},
                },
            )
            held_at = time.perf_counter()
            hold_ms.append((held_at - scheduled) * 1000)
            statuses[f"hold {status}"] = statuses.get(f"hold {status}", 0) + 1
            if status != 201:
                return
            booking_id = json.loads(body)["id"]
            auth["Idempotency-Key"] = uuid.uuid4().hex
            status, body = await call(
                "POST", f"/api/v1/bookings/{booking_id}/payment", auth, {"payment_method": "tok_success"}
            )
            done = time.perf_counter()
            pay_ms.append((done - held_at) * 1000)
            statuses[f"pay {status}"] = statuses.get(f"pay {status}", 0) + 1
            if status == 200:
                confirmed += 1
                flow_ms.append((done - scheduled) * 1000)
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
            errors += 1

    started = time.perf_counter()
    tasks, index = [], 0
    while True:
        scheduled = started + index / rate
        if scheduled >= started + duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.ensure_future(
                flow(
                    scheduled,
                    rng.choice(room_types),
                    START + timedelta(days=rng.randrange(0, CALENDAR_DAYS - 4)),
                    rng.randrange(1, 4),
                    tokens[index % len(tokens)],
                )
            )
        )
        index += 1
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 120)
    elapsed = time.perf_counter() - started

    def percentiles(values: list[float]) -> dict:
        data = np.array(values or [0.0])
        return {
            p: round(float(np.percentile(data, q)), 2)
            for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
        } | {"max": round(float(data.max()), 2)}

    return {
        "mode": "open-loop",
        "arrival_rate_per_s": rate,
        "duration_s": round(elapsed, 2),
        "flows_started": index,
        "confirmed": confirmed,
        "confirmed_per_s": round(confirmed / elapsed, 1),
        "errors": errors,
        "statuses": dict(sorted(statuses.items())),
        "latency_ms": {
            "hold": percentiles(hold_ms),
            "pay_and_confirm": percentiles(pay_ms),
            "end_to_end": percentiles(flow_ms),
        },
    }


# ------------------------------------------------------------------ main


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and all its descendants (uvicorn's workers), from
    /proc: on a shared machine throughput says how much CPU we were given, this says what we need."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending.extend(int(child) for child in children)
    return total


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pid_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """CPU seconds by process over one step: API (all uvicorn workers), worker, PostgreSQL
    (the bench database's backends; the cluster's shared background processes apart) and
    the load generator. PostgreSQL processes are found through pg_stat_activity; a backend
    that exits during the step loses its share (the pools keep theirs open)."""

    def __init__(self, admin_url: str, server_pid: int, worker_pid: int) -> None:
        self.admin_url, self.server_pid, self.worker_pid = admin_url, server_pid, worker_pid

    def _postgres(self) -> tuple[dict[int, float], dict[int, float]]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, datname, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).fetchall()
        ours, shared = {}, {}
        for pid, datname, backend_type in rows:
            if datname == DATABASE:
                target = ours
            elif backend_type in ("walwriter", "checkpointer", "background writer", "autovacuum launcher"):
                target = shared
            else:
                continue
            if (cpu := _pid_cpu(pid)) is not None:
                target[pid] = cpu
        return ours, shared

    def snapshot(self) -> dict:
        ours, shared = self._postgres()
        return {
            "api": cpu_seconds(self.server_pid),
            "worker": cpu_seconds(self.worker_pid),
            "postgres": ours,
            "postgres_shared": shared,
            "load_generator": _own_cpu(),
        }

    @staticmethod
    def delta(before: dict, after: dict, confirmed: int, seconds: float) -> dict:
        used = {
            name: after[name] - before[name]
            if not isinstance(after[name], dict)
            # pids new in the step count from zero
            else sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            for name in after
        }
        return {
            name: {
                "seconds": round(value, 2),
                "cores_busy": round(value / seconds, 2),
                "ms_per_confirmed_booking": round(1000 * value / max(1, confirmed), 2),
            }
            for name, value in used.items()
        }


def outbox_backlog(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]


def drained(url: str, worker_pid: int, *, timeout: float = 120) -> float:
    """Waits until the worker has published every event and its CPU is quiet (consumers done);
    returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = cpu_seconds(worker_pid)
        time.sleep(0.5)
        if outbox_backlog(url) == 0 and cpu_seconds(worker_pid) - before < 0.02:
            break
    return round(time.perf_counter() - started, 1)


P99_LIMIT_MS = 150.0


NATS_URL = os.environ.get("STAYBOOK_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def nats_reachable(url: str = NATS_URL) -> bool:
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=1).close()
    except OSError:
        return False
    return True


async def delete_streams(namespace: str, url: str = NATS_URL) -> list[str]:
    """Removes the run's JetStream streams (all named after its namespace)."""
    return await delete_namespace_streams(url, namespace)


def sustained(figures: dict, p99_limit_ms: float = P99_LIMIT_MS) -> bool:
    """Every flow confirmed, no errors, and the end-to-end p99 under the limit."""
    return (
        figures["errors"] == 0
        and figures["confirmed"] == figures["flows_started"]
        and figures["latency_ms"]["end_to_end"]["p99"] < p99_limit_ms
    )


@contextlib.contextmanager
def _terminated(process: subprocess.Popen):
    try:
        yield process
    finally:
        stop_process(process, timeout=15)


@contextlib.contextmanager
def _streams_deleted(namespace: str | None):
    try:
        yield
    finally:
        if namespace is not None:
            with contextlib.suppress(Exception):
                print(f"deleted streams {', '.join(asyncio.run(delete_streams(namespace)))}")


def headline(variants: dict) -> dict:
    """The summary's figures from a run's steps: the sustained rate (p99 under the bound), and, as a
    loaded machine may sustain none, the last step that lost no flow with its p99 and CPU per booking."""
    sustained = [v["sustained"] for v in variants.values() if v.get("sustained")]
    best = max(sustained, key=lambda s: s["confirmed_per_s"], default=None)
    clean = [
        s for v in variants.values() for s in v["steps"] if s["errors"] == 0 and s["confirmed"] == s["flows_started"]
    ]
    top = max(clean, key=lambda s: (s["confirmed_per_s"], -s["latency_ms"]["end_to_end"]["p99"]), default=None)
    return {
        "sustained_confirmed_per_s": best["confirmed_per_s"] if best else 0.0,
        "p99_ms": best["latency_ms"]["end_to_end"]["p99"] if best else None,
        "highest_lossless_confirmed_per_s": top["confirmed_per_s"] if top else 0.0,
        "highest_lossless_p99_ms": top["latency_ms"]["end_to_end"]["p99"] if top else None,
        "api_cpu_ms_per_booking": top["cpu_by_process"]["api"]["ms_per_confirmed_booking"] if top else None,
        "worker_cpu_ms_per_booking": top["cpu_by_process"]["worker"]["ms_per_confirmed_booking"] if top else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rates",
        default="5,10,20,30,40,50,60,70,80,100,120",
        help="open-loop arrival rates (flows/s) tried in order per variant; the search stops at the first "
        "rate whose end-to-end p99 reaches 150 ms (or that loses a flow)",
    )
    parser.add_argument("--duration", type=float, default=15, help="seconds per rate")
    parser.add_argument("--room-types", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="uvicorn worker processes")
    parser.add_argument("--variants", default="spread,hotspot")
    parser.add_argument("--pool", type=int, default=12, help="database connections per server worker")
    parser.add_argument("--server-cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--client-cpu", type=int, default=None, help="pin the load generator to this CPU")
    parser.add_argument(
        "--bus",
        choices=("auto", "nats", "in-process"),
        default="auto",
        help="the worker's bus: NATS JetStream when reachable (auto), or the in-process bus",
    )
    parser.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the sandbox as users run it: simulated latency and signed webhooks the worker delivers to the "
        "API (--no-webhooks: instant mode, no webhooks)",
    )
    parser.add_argument("--provider-latency-ms", type=int, default=40, help="the sandbox's simulated round trip")
    parser.add_argument("--name", default="booking", help="result file bench/results/<name>.json")
    parser.add_argument("--before", help="a result file of the same benchmark on earlier code, for the summary")
    parser.add_argument(
        "--p99-limit-ms",
        type=float,
        default=P99_LIMIT_MS,
        help="the end-to-end p99 a sustained rate stays under (the platform issue's booking target is 300 ms)",
    )
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]

    load_before = os.getloadavg()
    plain_url, async_url = fresh_database()
    room_types = seed(plain_url, args.room_types, units=100_000)
    ceiling = pgbench(plain_url, args.room_types)
    print(f"pgbench hold ceiling: {ceiling['tps']:.0f} tps ({ceiling['latency_avg_ms']} ms avg)")

    settings = Settings(database_url=async_url, environment="test")
    signer = TokenSigner(settings)
    tokens = [signer.issue(uuid.uuid4(), "guest") for _ in range(500)]
    env = {
        "STAYBOOK_DATABASE_URL": async_url,
        "STAYBOOK_ENVIRONMENT": "test",
        "STAYBOOK_LOG_LEVEL": "WARNING",
        # No overflow: connections beyond the pool would be opened and closed per burst, and the
        # PostgreSQL here is shared with other processes.
        "STAYBOOK_DATABASE_POOL_SIZE": str(args.pool),
        "STAYBOOK_DATABASE_MAX_OVERFLOW": "0",
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000",
        "STAYBOOK_PAYMENTS__SANDBOX_INSTANT": "false" if args.webhooks else "true",
        "STAYBOOK_PAYMENTS__SANDBOX_LATENCY_MS": str(args.provider_latency_ms),
        "STAYBOOK_BOOKING__HOLD_TTL_SECONDS": "600",
    }
    # Redis as in production: caches, rate limits, token versions (a key prefix of this run's own).
    env["STAYBOOK_REDIS_URL"] = os.environ.get("STAYBOOK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    env["STAYBOOK_REDIS_KEY_PREFIX"] = f"benchbk{uuid.uuid4().hex[:8]}:"
    # The sandbox posts its webhooks to http_port: the server's port, in the API and the worker.
    port = free_port()
    env["STAYBOOK_HTTP_PORT"] = str(port)
    # The worker publishes to NATS JetStream as in production, on streams of its own for this run.
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    bus = "nats-jetstream" if args.bus != "in-process" and nats_reachable() else "in-process"
    if args.bus == "nats" and bus != "nats-jetstream":
        raise SystemExit(f"NATS is not reachable at {NATS_URL}")
    if bus == "nats-jetstream":
        env.update({"STAYBOOK_NATS_URL": NATS_URL, "STAYBOOK_BUS_NAMESPACE": namespace})
        print(f"bus: NATS JetStream at {NATS_URL}, namespace {namespace}")
    else:
        reason = "as asked" if args.bus == "in-process" else f"NATS is not reachable at {NATS_URL}"
        print(f"bus: in-process ({reason}); production runs on JetStream")
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    variants = {}
    command = staybook_command("serve", "--port", "{port}", "--workers", str(args.workers))
    mail_dir = tempfile.mkdtemp(prefix="staybook-bench-mail-")
    worker_env = {
        **os.environ,
        **env,
        "STAYBOOK_NOTIFICATIONS__MAIL_SINK_DIR": mail_dir,
        # The seeded calendar already reaches past this horizon: the worker's start-up roll-forward
        # (a daily job, not a per-booking cost; with the default 365 days it would open ~670,000
        # nights for 2,000 room types during the first steps) has nothing to open.
        "STAYBOOK_INVENTORY__HORIZON_DAYS": "30",
    }
    worker_log = tempfile.NamedTemporaryFile(prefix="staybook-bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(staybook_command("worker"), env=worker_env, stdout=worker_log, stderr=subprocess.STDOUT)
    with (
        _streams_deleted(namespace if bus == "nats-jetstream" else None),
        _terminated(worker),
        Server(command, env=env, cpu=args.server_cpu, port=port, startup_timeout=600) as server,
    ):
        print(f"server pid {server.process.pid}, worker pid {worker.pid} (log {worker_log.name})", flush=True)
        split = CpuSplit(ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}", server.process.pid, worker.pid)
        print(f"worker idle after {drained(plain_url, worker.pid)} s", flush=True)
        for variant in args.variants.split(","):
            targets = room_types if variant == "spread" else room_types[:10]
            asyncio.run(
                drive(server.url, targets, tokens, rate=20, duration=3, connections=args.connections, seed_value=1)
            )  # warm-up: every worker's connections, statements and caches
            drained(plain_url, worker.pid)
            steps, best, retried = [], None, False
            step = 0
            while step < len(rates):
                rate = rates[step]
                cpu_before = split.snapshot()
                figures = asyncio.run(
                    drive(
                        server.url,
                        targets,
                        tokens,
                        rate=rate,
                        duration=args.duration,
                        connections=args.connections,
                        seed_value=2 + len(steps),
                    )
                )
                cpu_after = split.snapshot()
                figures["outbox_backlog_at_end"] = outbox_backlog(plain_url)
                # The worker's share counts until it has handled the step's events: a worker that
                # falls behind still owes their CPU.
                figures["worker_drain_s"] = drained(plain_url, worker.pid)
                cpu_after["worker"] = cpu_seconds(worker.pid)
                figures["cpu_by_process"] = CpuSplit.delta(
                    cpu_before, cpu_after, figures["confirmed"], figures["duration_s"]
                )
                figures["server_cpu"] = figures["cpu_by_process"]["api"]
                figures["sustained"] = sustained(figures, args.p99_limit_ms)
                steps.append(figures)
                lat = figures["latency_ms"]
                print(
                    f"{variant:>8} @ {rate:>5.0f}/s: {figures['confirmed_per_s']:.1f} confirmed/s; "
                    f"hold p50/p99 {lat['hold']['p50']}/{lat['hold']['p99']} ms; "
                    f"pay p50/p99 {lat['pay_and_confirm']['p50']}/{lat['pay_and_confirm']['p99']} ms; "
                    f"end-to-end p50/p99/p99.9 {lat['end_to_end']['p50']}/{lat['end_to_end']['p99']}/"
                    f"{lat['end_to_end']['p99.9']} ms; errors {figures['errors']}; {figures['statuses']}; "
                    "CPU ms/booking "
                    + ", ".join(f"{k} {v['ms_per_confirmed_booking']}" for k, v in figures["cpu_by_process"].items())
                    + f"; outbox backlog {figures['outbox_backlog_at_end']}, drained in {figures['worker_drain_s']} s",
                    flush=True,
                )
                if not figures["sustained"]:
                    if retried:
                        break
                    # One retry of a failed step: on a shared machine a neighbour's burst can spoil one.
                    retried = True
                    continue
                retried = False
                best = figures
                step += 1
            variants[variant] = {
                "room_types": len(targets),
                "sustained": best,
                "sustained_rate_per_s": best["arrival_rate_per_s"] if best else None,
                "steps": steps,
            }
    ratios = {
        name: ratio(v["sustained"]["confirmed_per_s"], ceiling["tps"]) if v["sustained"] else 0.0
        for name, v in variants.items()
    }
    provider = (
        f"sandbox provider with {args.provider_latency_ms} ms latency and signed webhooks delivered by the worker"
        if args.webhooks
        else "sandbox provider instant, no webhooks"
    )
    topology = (
        f"staybook serve --workers {args.workers} + one staybook worker, on PostgreSQL, Redis, "
        f"{'NATS JetStream' if bus == 'nats-jetstream' else 'the in-process bus'}; {provider}; "
        "the load generator in this process"
    )
    before = json.loads(Path(args.before).read_text()) if args.before else None
    summary = {"topology": topology, **headline(variants)}
    if before is not None:
        earlier = headline(before["variants"])
        summary |= {f"before_{k}": v for k, v in earlier.items()} | {"before_commit": before.get("commit")}
        summary["before_confirmed_per_s"] = earlier["sustained_confirmed_per_s"]
    result = write_result(
        args.name,
        {
            "summary": summary,
            "what": f"hold -> pay -> confirm over HTTP (2 requests, {provider}), one staybook serve "
            f"({args.workers} uvicorn worker(s)), PostgreSQL; open-loop arrivals stepped up until the end-to-end "
            f"p99 reaches {args.p99_limit_ms:.0f} ms",
            "command": "flock /tmp/staybook-bench.lock .venv/bin/python -m bench.booking",
            "ceiling": "pgbench, bare hold transaction on the same tables, same run",
            "pgbench": ceiling,
            "bus": bus,
            "variants": variants,
            "ratio_to_ceiling": ratios,
            "target": f"confirmed bookings/s >= 10% of pgbench with end-to-end p99 < {args.p99_limit_ms:.0f} ms; "
            "platform peak 83/s",
            "best_sustained_confirmed_per_s": max(
                (v["sustained"]["confirmed_per_s"] for v in variants.values() if v["sustained"]), default=0.0
            ),
            # The machine is shared: other processes' load skews every figure (pgbench's included).
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        },
    )
    print(f"wrote {result}")


if __name__ == "__main__":
    main()
