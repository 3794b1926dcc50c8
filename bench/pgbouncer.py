"""PgBouncer's cost on the booking path: direct, session pooling, transaction pooling (docs/adr/0018).

Three ways from staybook to one PostgreSQL (the machine's, 127.0.0.1:5432, a fresh database):
- `direct`: no pooler, prepared statements on (ADR 0012: asyncpg's statement cache);
- `session`: PgBouncer 1.18 (Debian) in session pooling, prepared statements on;
- `transaction`: PgBouncer 1.18 in transaction pooling, `database_prepared_statements=false`
  (asyncpg's and SQLAlchemy's caches off: every statement parsed and planned afresh, unnamed);
- `direct-unprepared`: no pooler, prepared statements off: the cost of the statements alone,
  apart from PgBouncer's hop.

Each way runs two loads, closed loop, one after the other, the ways interleaved round by round
(the machine is shared: each way's ratio to direct is taken within a round, and the median of
the rounds' ratios is reported; every round is kept):
- `pgbench`: the bare hold transaction (bench/booking.py's script: a 3-night conditional UPDATE of
  room_nights and an INSERT), 8 clients; `-M prepared`, or `-M extended` (unnamed statements) where
  prepared statements are off. The database's own ceiling for each way.
- `booking`: staybook's hold then payment as the API runs them (booking.service.place_hold and pay,
  each under an Idempotency-Key claim, the sandbox provider in instant mode), in this process on
  uvloop with no HTTP in between, `--concurrency` guests each booking again as soon as the last
  booking is confirmed. Bookings/s, the latency of one booking (hold + pay), and the CPU spent per
  booking by this process (the API's share), PgBouncer, and the PostgreSQL backends serving it.

    flock /tmp/staybook-bench.lock .venv/bin/python -m bench.pgbouncer [--rounds 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import uvloop

from bench import booking as booking_bench
from bench.harness import ratio, stop_process, write_result
from staybook.app import collect_wiring, configure_observability
from staybook.booking import service
from staybook.booking.ports import BookingDeps
from staybook.booking.schemas import HoldRequest
from staybook.kernel.idempotency import IdempotencyStore, answer_once
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal
from staybook.kernel.settings import Settings
from staybook.payments import bootstrap as payments_bootstrap
from staybook.stack import pgbouncer_command, write_pgbouncer_config

ADMIN_URL = os.environ.get("STAYBOOK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "staybook_bench_pgbouncer"
# PgBouncer's listening ports (this benchmark's own range).
PORTS = {"session": 16496, "transaction": 16497}
WAYS = ("direct", "direct-unprepared", "session", "transaction")
# The ways whose statements are not prepared by name (unnamed, parsed and planned every time).
UNPREPARED = {"direct-unprepared", "transaction"}
ROOM_TYPES, UNITS = 200, 100_000
NOTE = (
    "The machine is shared (see load_average_1m_before_after): bookings/s and their ratios move with"
    " its load from round to round by more than the ways differ, so the CPU spent per booking (this "
    "process, PgBouncer, the PostgreSQL backends) is the comparison; bookings/s are the ceiling of t"
    "his closed loop at that load, not of the platform."
)


def fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    from staybook import migrate

    migrate.upgrade(Settings(database_url=url, environment="test"))
    return url


def way_url(way: str, direct: str) -> str:
    if way not in PORTS:
        return direct
    return re.sub(r"@[^/]+/", f"@127.0.0.1:{PORTS[way]}/", direct)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the bench database (the server's side of the work)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (DATABASE,))]
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seconds


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ pgbench


def pgbench(url: str, way: str, seconds: int, clients: int = 8) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)  # noqa: SIM115
    last_day = booking_bench.CALENDAR_DAYS - 4
    # Typed binds: with -M prepared/extended, `:d` is a parameter PostgreSQL must type.
    text = booking_bench.PGBENCH_SCRIPT.replace(":i)", ":i::int)").replace(":d", ":d::int")
    script.write(text.format(count=ROOM_TYPES, last_day=last_day, start=booking_bench.START))
    script.close()
    # A named prepared statement does not survive a transaction pool: unnamed (extended) there.
    protocol = "extended" if way in UNPREPARED else "prepared"
    try:
        output = subprocess.run(
            ["pgbench", "-n", "-M", protocol, "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", script.name,
             url],
            capture_output=True, text=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    if output.returncode != 0:
        raise RuntimeError(f"pgbench ({way}) failed: {output.stderr.strip()[-600:]}")
    output = output.stdout
    return {
        "tps": float(re.search(r"tps = ([\d.]+)", output).group(1)),
        "latency_avg_ms": float(re.search(r"latency average = ([\d.]+) ms", output).group(1)),
        "clients": clients,
        "protocol": protocol,
    }


# ------------------------------------------------------------------ staybook's booking path


def guest_details() -> dict:
    return {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+351912345678", "locale": "en"}


async def booking_load(url: str, way: str, room_types: list[str], seconds: float, concurrency: int) -> dict:
    settings = Settings(
        database_url=url,
        environment="test",
        log_level="WARNING",
        database_pool_size=concurrency,
        database_max_overflow=0,
        database_prepared_statements=way not in UNPREPARED,
        payments={"sandbox_instant": True},
    )
    configure_observability(settings)
    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    store = IdempotencyStore(runtime.db, settings.booking.idempotency_ttl_seconds)
    deps = BookingDeps(payments=payments_bootstrap.build(runtime))  # this process enters no lifespan
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(7)

    async def one_booking(principal: Principal) -> None:
        check_in = booking_bench.START + timedelta(days=rng.randrange(booking_bench.CALENDAR_DAYS - 4))
        hold = HoldRequest.model_validate(
            {
                "room_type_id": rng.choice(room_types),
                "check_in": check_in.isoformat(),
                "check_out": (check_in + timedelta(days=2)).isoformat(),
                "guests": 2,
                "guest": guest_details(),
            }
        )

        async def place(claim):
            return 201, await service.place_hold(runtime, principal, hold, claim)

        claim = store.claim(principal.user_id, uuid.uuid4().hex, "bench-hold")
        status, held, _ = await answer_once(claim, place, instance="/api/v1/bookings")
        booking_id = uuid.UUID(held["id"])

        async def pay(claim):
            return await service.pay(runtime, deps, principal, booking_id, "tok_success", claim)

        claim = store.claim(principal.user_id, uuid.uuid4().hex, "bench-pay")
        status, paid, _ = await answer_once(claim, pay, instance=f"/api/v1/bookings/{booking_id}/payment")
        if status != 200 or paid["outcome"] != "confirmed":
            raise RuntimeError(f"payment answered {status}: {paid}")

    async def guest(deadline: float) -> None:
        principal = Principal(uuid.uuid4(), "guest")
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await one_booking(principal)
            except Exception as error:  # counted and shown: a pool mode that breaks a statement shows here
                name = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                errors[name] = errors.get(name, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)

    try:
        # Warm-up: the pool's connections opened, the statements prepared where they are kept.
        await asyncio.gather(*(guest(time.perf_counter() + 1.5) for _ in range(concurrency)))
        latencies.clear()
        errors.clear()
        pooler = PGBOUNCER_PIDS.get(way)
        pooler_before = cpu_seconds(pooler) if pooler else 0.0
        backends_before = backend_cpu()
        cpu_before, started = own_cpu(), time.perf_counter()
        await asyncio.gather(*(guest(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = own_cpu() - cpu_before
        pooler_cpu = (cpu_seconds(pooler) - pooler_before) if pooler else 0.0
        backends_after = backend_cpu()
        server_cpu = sum(after - backends_before.get(pid, 0.0) for pid, after in backends_after.items())
    finally:
        await runtime.close()
    done = len(latencies)
    ordered = sorted(latencies)

    def quantile(q: float) -> float | None:
        return round(ordered[min(done - 1, int(q * done))] * 1000, 2) if done else None

    return {
        "bookings_per_s": round(done / elapsed, 1),
        "booking_ms": {"p50": quantile(0.5), "p99": quantile(0.99)},
        "client_cpu_ms_per_booking": round(cpu * 1000 / done, 2) if done else None,
        "pgbouncer_cpu_ms_per_booking": round(pooler_cpu * 1000 / done, 3) if done else None,
        "postgres_cpu_ms_per_booking": round(server_cpu * 1000 / done, 2) if done else None,
        "errors": errors,
        "concurrency": concurrency,
    }


PGBOUNCER_PIDS: dict[str, int] = {}
PGBOUNCER_VERSION = ""


def start_poolers(work: Path, processes: list) -> None:
    global PGBOUNCER_VERSION
    version = subprocess.run(pgbouncer_command(Path("-V"))[:1] + ["--version"], capture_output=True, text=True)
    PGBOUNCER_VERSION = version.stdout.split("\n")[0]
    work.chmod(0o755)
    for way, port in PORTS.items():
        directory = work / way
        # As many server connections as the direct way opens (the load's clients): what is measured
        # is the hop and the statements, not a smaller pool (session pooling needs one per client).
        pool_size = 40 if way == "session" else 8
        config = write_pgbouncer_config(directory, port=port, backend_port=5432, pool_mode=way, pool_size=pool_size)
        log = (directory / "pgbouncer.log").open("ab")
        process = subprocess.Popen(pgbouncer_command(config), stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        PGBOUNCER_PIDS[way] = process.pid
    deadline = time.monotonic() + 20
    for way in PORTS:
        while True:
            try:
                with psycopg.connect(way_url(way, DIRECT_URL[0]), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer ({way}) did not start; see {work / way}") from None
                time.sleep(0.2)


DIRECT_URL: list[str] = []


def median_of(rounds: list[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=6, help="Seconds of each booking load")
    parser.add_argument("--pgbench-seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()

    direct = fresh_database()
    DIRECT_URL.append(direct)
    room_types = booking_bench.seed(direct, ROOM_TYPES, UNITS)
    processes: list[subprocess.Popen] = []
    rounds: dict[str, list[dict]] = {way: [] for way in WAYS}
    pgbench_rounds: dict[str, list[dict]] = {way: [] for way in WAYS}
    work = Path(tempfile.mkdtemp(prefix="staybook-bench-pgbouncer-"))
    load_before = os.getloadavg()[0]
    try:
        start_poolers(work, processes)
        for number in range(options.rounds):
            order = list(WAYS) if number % 2 == 0 else list(reversed(WAYS))
            for way in order:
                url = way_url(way, direct)
                bench = pgbench(url, way, options.pgbench_seconds)
                pgbench_rounds[way].append(bench)
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    figures = runner.run(
                        booking_load(
                            url.replace("postgresql://", "postgresql+asyncpg://"), way, room_types, options.duration,
                            options.concurrency,
                        )
                    )  # fmt: skip
                rounds[way].append(figures)
                print(
                    f"round {number + 1} {way:<18} pgbench {bench['tps']:>8.0f} tps   booking "
                    f"{figures['bookings_per_s']:>6.1f}/s p50 {figures['booking_ms']['p50']} ms "
                    f"p99 {figures['booking_ms']['p99']} ms client {figures['client_cpu_ms_per_booking']} ms/booking "
                    f"pgbouncer {figures['pgbouncer_cpu_ms_per_booking']} "
                    f"postgres {figures['postgres_cpu_ms_per_booking']} ms/booking "
                    f"errors {sum(figures['errors'].values())}",
                    flush=True,
                )
    finally:
        for process in processes:
            stop_process(process, timeout=10)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')

    # The machine is shared: its load moves more between rounds than the ways differ. Each way
    # is compared with the direct run of the same round (minutes apart at most), and the median
    # of those per-round ratios is the figure; the CPU per booking varies less with the load.
    def round_ratios(figures: dict[str, list[dict]], key: str, way: str) -> float:
        pairs = zip(figures[way], figures["direct"], strict=True)
        return round(statistics.median(ratio(mine[key], direct[key]) for mine, direct in pairs), 3)

    ways = {}
    for way in WAYS:
        ways[way] = {
            "bookings_per_s": median_of(rounds[way], "bookings_per_s"),
            "bookings_ratio_to_direct": round_ratios(rounds, "bookings_per_s", way),
            "booking_p50_ms": statistics.median(r["booking_ms"]["p50"] for r in rounds[way]),
            "booking_p99_ms": statistics.median(r["booking_ms"]["p99"] for r in rounds[way]),
            "client_cpu_ms_per_booking": median_of(rounds[way], "client_cpu_ms_per_booking"),
            "pgbouncer_cpu_ms_per_booking": median_of(rounds[way], "pgbouncer_cpu_ms_per_booking"),
            "postgres_cpu_ms_per_booking": median_of(rounds[way], "postgres_cpu_ms_per_booking"),
            "total_cpu_ms_per_booking": median_of(
                [
                    {
                        "total": r["client_cpu_ms_per_booking"]
                        + r["pgbouncer_cpu_ms_per_booking"]
                        + r["postgres_cpu_ms_per_booking"]
                    }
                    for r in rounds[way]
                ],
                "total",
            ),
            "pgbench_tps": median_of(pgbench_rounds[way], "tps"),
            "pgbench_ratio_to_direct": round_ratios(pgbench_rounds, "tps", way),
            "errors": sum(sum(r["errors"].values()) for r in rounds[way]),
        }
    ceiling = ways["direct"]
    summary = {
        "what": "staybook's booking path (hold + pay under Idempotency claims, sandbox instant, in-process, "
        f"{options.concurrency} guests closed loop) and pgbench's bare hold transaction: direct, direct with "
        "prepared statements off, PgBouncer 1.18 session pooling, transaction pooling with prepared statements off",
        "direct_ceiling_bookings_per_s": ceiling["bookings_per_s"],
        "direct_ceiling_pgbench_tps": ceiling["pgbench_tps"],
        "direct_client_cpu_ms_per_booking": ceiling["client_cpu_ms_per_booking"],
        "direct_postgres_cpu_ms_per_booking": ceiling["postgres_cpu_ms_per_booking"],
        "direct_total_cpu_ms_per_booking": ceiling["total_cpu_ms_per_booking"],
        **{
            f"{way.replace('-', '_')}_{key}": ways[way][key]
            for way in WAYS[1:]
            for key in (
                "bookings_ratio_to_direct", "pgbench_ratio_to_direct", "client_cpu_ms_per_booking",
                "pgbouncer_cpu_ms_per_booking", "postgres_cpu_ms_per_booking", "total_cpu_ms_per_booking",
            )
        },
        "errors": {way: ways[way]["errors"] for way in WAYS},
        "rounds": options.rounds,
        "note": NOTE,
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip
    print()
    print(f"{'way':<18} {'bookings/s':>10} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'client ms':>9} "
          f"{'pgb ms':>7} {'pg ms':>6} {'total ms':>8} {'pgbench tps':>11} {'ratio':>6}")  # fmt: skip
    for way, figures in ways.items():
        print(
            f"{way:<18} {figures['bookings_per_s']:>10.1f} {figures['bookings_ratio_to_direct']:>6.2f} "
            f"{figures['booking_p50_ms']:>8.1f} {figures['booking_p99_ms']:>8.1f} "
            f"{figures['client_cpu_ms_per_booking']:>9.2f} {figures['pgbouncer_cpu_ms_per_booking']:>7.3f} "
            f"{figures['postgres_cpu_ms_per_booking']:>6.2f} {figures['total_cpu_ms_per_booking']:>8.2f} "
            f"{figures['pgbench_tps']:>11.0f} {figures['pgbench_ratio_to_direct']:>6.2f}"
        )
    path = write_result(
        "pgbouncer",
        {
            "summary": summary,
            "command": "python -m bench.pgbouncer " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(options).items()
            ),
            "pgbouncer": PGBOUNCER_VERSION,
            "ways": ways,
            "rounds": {way: {"booking": rounds[way], "pgbench": pgbench_rounds[way]} for way in WAYS},
        },
    )  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
