"""The platform under its real mix: an open-loop load of searches, pages, quotes, logins, bookings,
cancellations, signals and recommendations against the production topology.

    .venv/bin/python -m bench.platform [--rate 600] [--duration 30] [--properties 2000] [--generators 2]

Topology, as an operator runs it: `staybook serve --workers 2` plus one `staybook worker`, in
production mode, on PostgreSQL (a database of this run), Redis (a key prefix of this run) and
NATS JetStream (a namespace of this run), with the sandbox provider's webhooks on (delivered
by the worker). Data: `staybook seed --properties N` (real cities), and a share of popular
room types cut to 3 units so that holds contend.

Load: `--generators` processes, each an open loop at rate/generators: an operation is due at
t0 + i/rate whatever happened before, chosen by weight, and its latency counts from that
scheduled time (coordinated omission corrected). A booking flow is a hold, then (most of the
time) a payment — some declined, some abandoned to expire. Each generator reports its own
CPU and event-loop lag, so the load generator's share of the cores is in the result.

Phases: the mix at `--rate`; then each operation alone at a modest rate, for its CPU cost
alone (the mix's API+worker CPU against the sum of the operations' costs alone is
`cpu_ratio_mix_to_alone`); then bookings alone under contention at `--booking-rate`; then
random-point searches alone at `--search-rate`. Afterwards: oversold nights (bookings per
room-night against its total) and lost confirmations (confirmed to the client, not confirmed
or cancelled-by-us in the database).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import psycopg

from bench.booking import (
    ADMIN_URL,
    NATS_URL,
    Connection,
    _own_cpu,
    _pid_cpu,
    _streams_deleted,
    _terminated,
    cpu_seconds,
    drained,
    nats_reachable,
)
from bench.harness import Server, ratio, staybook_command, write_result
from bench.loadgen import open_loop
from staybook.recovery.drill import OVERSOLD_NIGHTS_SQL

HORIZON_DAYS = 30
EXPECTED_REFUSALS = {402, 409}
DATABASE = os.environ.get("STAYBOOK_BENCH_PLATFORM_DATABASE", "staybook_bench_platform")
REDIS_URL = os.environ.get("STAYBOOK_BENCH_REDIS_URL", "redis://127.0.0.1:6379")

# Relative weights of the mix (a booking flow is 1-2 requests). Reads dominate, as on a travel site.
WEIGHTS = {
    "search_popular": 30,
    "search_random": 12,
    "property": 15,
    "availability": 12,
    "login": 2,
    "booking": 4,
    "cancel": 0.5,
    "signals": 15,
    "recommendations": 5,
}
PASSWORD = "platform-bench-pass-42"


# ------------------------------------------------------------------ the generator (its own process)


class Generator:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.rng = random.Random(config["seed"])
        self.host, self.port = "127.0.0.1", config["port"]
        self.latency: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[str, int]] = {}
        self.errors: dict[str, int] = {}
        self.confirmed: list[str] = []
        self.cancelled: list[str] = []
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        self.lag: list[float] = []
        today = date.fromisoformat(config["today"])
        self.today = today
        names = list(config["weights"])
        self.ops = names
        self.op_weights = [config["weights"][n] for n in names]

    def _record(self, op: str, status: int | None, scheduled: float) -> None:
        if status is None:
            self.errors[op] = self.errors.get(op, 0) + 1
            return
        self.latency.setdefault(op, []).append((time.perf_counter() - scheduled) * 1000)
        bucket = self.statuses.setdefault(op, {})
        bucket[str(status)] = bucket.get(str(status), 0) + 1
        # Declines (402) and sold-out holds (409) are answers the mix expects; any other 4xx means the
        # benchmark asked for something invalid, which would time a cheap refusal instead of the work.
        if status >= 500 or (status >= 400 and status not in EXPECTED_REFUSALS):
            self.errors[op] = self.errors.get(op, 0) + 1

    async def _call(self, method: str, path: str, *, body: dict | None = None, token: str | None = None,
                    key: bool = False) -> tuple[int | None, bytes]:  # fmt: skip
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        connection = await self.idle.get()
        try:
            return await connection.request(method, path, headers, json.dumps(body).encode() if body else b"")
        except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError):
            connection.writer = None
            return None, b""
        finally:
            self.idle.put_nowait(connection)

    def _stay(self) -> tuple[str, str]:
        # Inside the bookable window (inventory.horizon_days, 30 here): later dates are refused (422).
        check_in = self.today + timedelta(days=self.rng.randint(2, HORIZON_DAYS - 6))
        return check_in.isoformat(), (check_in + timedelta(days=self.rng.randint(1, 4))).isoformat()

    async def operation(self, op: str, scheduled: float) -> None:
        c, rng = self.config, self.rng
        token = rng.choice(c["tokens"])
        if op == "search_popular":
            city, check_in, check_out = c["popular"][min(int(rng.paretovariate(1.2)) - 1, len(c["popular"]) - 1)]
            status, _ = await self._call(
                "GET", "/api/v1/search?" + urlencode({"city": city, "check_in": check_in, "check_out": check_out,
                                                       "guests": 2})
            )  # fmt: skip
        elif op == "search_random":
            lat, lon = rng.choice(c["points"])
            check_in, check_out = self._stay()
            status, _ = await self._call(
                "GET",
                f"/api/v1/search?lat={lat + rng.uniform(-0.3, 0.3):.4f}&lon={lon + rng.uniform(-0.3, 0.3):.4f}"
                f"&radius_km=10&check_in={check_in}&check_out={check_out}&guests={rng.randint(1, 3)}",
            )
        elif op == "property":
            status, _ = await self._call("GET", f"/api/v1/properties/{rng.choice(c['properties'])}")
        elif op == "availability":
            check_in, check_out = self._stay()
            status, _ = await self._call(
                "GET",
                f"/api/v1/properties/{rng.choice(c['properties'])}/availability"
                f"?check_in={check_in}&check_out={check_out}&guests=2",
            )
        elif op == "login":
            status, _ = await self._call(
                "POST", "/api/v1/auth/login", body={"email": rng.choice(c["emails"]), "password": PASSWORD}
            )
        elif op == "booking":
            await self.booking(scheduled, token)
            return
        elif op == "cancel":
            if not self.confirmed:
                return
            booking_id, owner = self.confirmed.pop(rng.randrange(len(self.confirmed)))
            status, _ = await self._call("POST", f"/api/v1/bookings/{booking_id}/cancel", token=owner, key=True)
            if status == 200:
                self.cancelled.append(booking_id)
            else:
                self.confirmed.append((booking_id, owner))
        elif op == "signals":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            signals = [
                {"kind": rng.choice(("view", "click")), "at": now, "property_id": rng.choice(c["properties"])}
                for _ in range(20)
            ]
            status, _ = await self._call(
                "POST", "/api/v1/signals", body={"signals": signals, "batch_id": str(uuid.uuid4())}, token=token
            )
        elif op == "recommendations":
            city = rng.choice(c["popular"])[0]
            status, _ = await self._call("GET", "/api/v1/recommendations?" + urlencode({"city": city}), token=token)
        else:
            raise ValueError(op)
        self._record(op, status, scheduled)

    async def booking(self, scheduled: float, token: str) -> None:
        c, rng = self.config, self.rng
        hot = rng.random() < c["hot_share"]
        room_type = rng.choice(c["hot_room_types"] if hot else c["room_types"])
        check_in, check_out = self._stay()
        body = {
            "room_type_id": room_type,
            "check_in": check_in,
            "check_out": check_out,
            "guests": 1,
            "guest": {"name": "Bench Guest", "email": "bench.guest@example.com"},
        }
        status, payload = await self._call("POST", "/api/v1/bookings", body=body, token=token, key=True)
        self._record("hold", status, scheduled)
        if status != 201:
            return
        booking_id = json.loads(payload)["id"]
        choice = rng.random()
        if choice < 0.07:
            return  # abandoned: the hold expires
        method = "tok_decline" if choice < 0.15 else "tok_success"
        started = time.perf_counter()
        status, payload = await self._call(
            "POST", f"/api/v1/bookings/{booking_id}/payment", body={"payment_method": method}, token=token, key=True
        )
        self._record("pay", status, started)
        if status is not None and status < 300 and json.loads(payload).get("outcome") == "confirmed":
            self.confirmed.append((booking_id, token))
            self.latency.setdefault("booking_end_to_end", []).append((time.perf_counter() - scheduled) * 1000)

    async def measure_lag(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lag.append((time.perf_counter() - before - 0.01) * 1000)

    async def run(self) -> dict:
        for _ in range(self.config["connections"]):
            self.idle.put_nowait(Connection(self.host, self.port))
        rate, duration = self.config["rate"], self.config["duration"]
        stop = asyncio.Event()
        lag_task = asyncio.create_task(self.measure_lag(stop))
        cpu_before = _own_cpu()
        started = time.perf_counter()

        def launch(_index: int, scheduled: float):
            return self.operation(self.rng.choices(self.ops, self.op_weights)[0], scheduled)

        tasks = await open_loop(rate, duration, launch)
        await asyncio.wait(tasks, timeout=60)
        elapsed = time.perf_counter() - started
        stop.set()
        await lag_task
        return {
            "elapsed_s": elapsed,
            "scheduled": len(tasks),
            "latency_ms": self.latency,
            "statuses": self.statuses,
            "errors": self.errors,
            "confirmed": [b for b, _ in self.confirmed] + self.cancelled,
            "cancelled": self.cancelled,
            "cpu_s": _own_cpu() - cpu_before,
            "loop_lag_ms": self.lag,
        }


def generator_main() -> None:
    config = json.loads(sys.stdin.read())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # To a file, not stdout: anything else the process writes there would corrupt the figures.
    Path(config["output"]).write_text(json.dumps(asyncio.run(Generator(config).run())))


# ------------------------------------------------------------------ the conductor


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    array = np.array(values)
    return {
        "count": len(values),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "p99.9": round(float(np.percentile(array, 99.9)), 2),
        "max": round(float(array.max()), 2),
    }


def run_generators(base: dict, *, rate: float, duration: float, weights: dict, count: int) -> dict:
    processes, files = [], []
    folder = Path(tempfile.mkdtemp(prefix="staybook-platform-"))
    for n in range(count):
        files.append(folder / f"generator-{n}.json")
        config = {
            **base,
            "rate": rate / count,
            "duration": duration,
            "weights": weights,
            "seed": base["seed"] + n,
            "output": str(files[-1]),
        }
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.platform", "--generator"], stdin=subprocess.PIPE
        )
        process.stdin.write(json.dumps(config).encode())
        process.stdin.close()
        processes.append(process)
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"a load generator failed (exit {process.returncode})")
    outputs = [json.loads(file.read_text()) for file in files]
    shutil.rmtree(folder, ignore_errors=True)
    merged: dict = {"latency_ms": {}, "statuses": {}, "errors": {}, "confirmed": [], "cancelled": [], "loop_lag_ms": []}
    for out in outputs:
        for op, values in out["latency_ms"].items():
            merged["latency_ms"].setdefault(op, []).extend(values)
        for op, statuses in out["statuses"].items():
            bucket = merged["statuses"].setdefault(op, {})
            for code, n in statuses.items():
                bucket[code] = bucket.get(code, 0) + n
        for op, n in out["errors"].items():
            merged["errors"][op] = merged["errors"].get(op, 0) + n
        merged["confirmed"] += out["confirmed"]
        merged["cancelled"] += out["cancelled"]
        merged["loop_lag_ms"] += out["loop_lag_ms"]
    merged["elapsed_s"] = max(out["elapsed_s"] for out in outputs)
    merged["generator_cpu_s"] = sum(out["cpu_s"] for out in outputs)
    merged["scheduled"] = sum(out["scheduled"] for out in outputs)
    return merged


def summarize(run: dict, cpu: dict) -> dict:
    answered = sum(sum(s.values()) for s in run["statuses"].values())
    seconds = run["elapsed_s"]
    all_latencies = [v for op, values in run["latency_ms"].items() if op != "booking_end_to_end" for v in values]
    return {
        "scheduled": run["scheduled"],
        "answered": answered,
        "requests_per_s": round(answered / seconds, 1),
        "errors": sum(run["errors"].values()),
        "errors_by_operation": run["errors"],
        "statuses": run["statuses"],
        "latency_ms": percentiles(all_latencies),
        "by_operation": {op: percentiles(values) for op, values in sorted(run["latency_ms"].items())},
        "confirmed": len(run["confirmed"]),
        "confirmed_per_s": round(len(run["confirmed"]) / seconds, 1),
        "generator_loop_lag_ms": percentiles(run["loop_lag_ms"]),
        "cpu": cpu,
        "cpu_ms_per_request": {name: round(1000 * used / max(1, answered), 3) for name, used in cpu["seconds"].items()},
    }


class CpuMeter:
    """CPU seconds by process from /proc: API (all workers), worker, this database's PostgreSQL
    backends, Redis and NATS (shared servers: other users of the machine count too)."""

    def __init__(self, api_pid: int, worker_pid: int) -> None:
        self.api_pid, self.worker_pid = api_pid, worker_pid
        self.redis_pid = _pid_of_command("redis-server")
        self.nats_pid = _pid_of_command("nats-server")

    def snapshot(self) -> dict:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (DATABASE,))]
        return {
            "api": cpu_seconds(self.api_pid),
            "worker": cpu_seconds(self.worker_pid),
            "postgres": {pid: _pid_cpu(pid) or 0.0 for pid in pids},
            "redis": (_pid_cpu(self.redis_pid) or 0.0) if self.redis_pid else 0.0,
            "nats": (_pid_cpu(self.nats_pid) or 0.0) if self.nats_pid else 0.0,
        }

    @staticmethod
    def delta(before: dict, after: dict, seconds: float, generator_cpu: float) -> dict:
        used = {name: after[name] - before[name] for name in ("api", "worker", "redis", "nats")}
        used["postgres"] = sum(cpu - before["postgres"].get(pid, 0.0) for pid, cpu in after["postgres"].items())
        used["load_generator"] = generator_cpu
        total = sum(used.values())
        return {
            "seconds": {k: round(v, 2) for k, v in used.items()},
            "cores_busy": {k: round(v / seconds, 2) for k, v in used.items()},
            "load_generator_share_of_cpu_used": round(generator_cpu / total, 3) if total else 0.0,
            "load_generator_share_of_cores": round(generator_cpu / seconds / (os.cpu_count() or 1), 3),
        }


def _pid_of_command(name: str) -> int | None:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                return int(comm.parent.name)
        except OSError:
            continue
    return None


def prepare_database(properties: int, hot: int) -> dict:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
    env = {**os.environ, "STAYBOOK_DATABASE_URL": url, "STAYBOOK_ENVIRONMENT": "development"}
    subprocess.run(staybook_command("migrate"), env=env, check=True, capture_output=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        staybook_command("seed", "--properties", str(properties)), env=env, check=True, capture_output=True
    )
    with psycopg.connect(url, autocommit=True) as conn:
        room_types = [
            (str(rt), str(p))
            for rt, p in conn.execute(
                "SELECT rt.id, rt.property_id FROM room_types rt JOIN properties p ON p.id = rt.property_id "
                "WHERE rt.status = 'active' AND p.status = 'active'"
            )
        ]
        rng = random.Random(3)
        hot_room_types = [rt for rt, _ in rng.sample(room_types, min(hot, len(room_types)))]
        # Contention: the popular room types have 3 units a night.
        conn.execute(
            "UPDATE room_nights SET total = GREATEST(held + booked, 3) WHERE room_type_id = ANY(%s::uuid[])",
            (hot_room_types,),
        )
        top_cities = "SELECT city FROM properties GROUP BY city ORDER BY count(*) DESC LIMIT 30"
        cities = [r[0] for r in conn.execute(top_cities)]
        places = "SELECT latitude, longitude FROM properties LIMIT 2000"
        points = [(float(a), float(b)) for a, b in conn.execute(places)]
        property_ids = sorted({p for _, p in room_types})
    today = date.today()
    popular = []
    for index, city in enumerate(cities * 2):
        check_in = today + timedelta(days=3 + 3 * (index % 8))
        popular.append((city, check_in.isoformat(), (check_in + timedelta(days=2 + index % 3)).isoformat()))
    return {
        "url": url,
        "room_types": [rt for rt, _ in room_types],
        "hot_room_types": hot_room_types,
        "properties": property_ids,
        "points": points,
        "popular": popular,
        "today": today.isoformat(),
    }


def oversold_nights(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(OVERSOLD_NIGHTS_SQL).fetchone()[0]


def lost_confirmations(url: str, confirmed: list[str], cancelled: list[str]) -> int:
    if not confirmed:
        return 0
    cancelled_set = set(cancelled)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = dict(
            conn.execute("SELECT id::text, status FROM bookings WHERE id = ANY(%s::uuid[])", (confirmed,)).fetchall()
        )
    expected = {b: ("cancelled" if b in cancelled_set else "confirmed") for b in confirmed}
    return sum(1 for b, status in expected.items() if rows.get(b) != status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=600, help="requests/s of the mix (open loop)")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--alone-rate", type=float, default=100)
    parser.add_argument("--alone-duration", type=float, default=8)
    parser.add_argument("--booking-rate", type=float, default=50, help="booking flows/s of the bookings phase")
    parser.add_argument("--search-rate", type=float, default=800, help="random searches/s of the search phase")
    parser.add_argument("--properties", type=int, default=2000)
    parser.add_argument("--hot-room-types", type=int, default=20)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64, help="per generator")
    parser.add_argument("--port", type=int, default=25810)
    parser.add_argument(
        "--only",
        choices=sorted(WEIGHTS),
        help="run this operation alone for --duration at --alone-rate and write no result (for profiling: "
        "py-spy record --subprocesses --pid <staybook serve pid> meanwhile)",
    )
    args = parser.parse_args()
    if args.generator:
        generator_main()
        return
    if not nats_reachable():
        raise SystemExit(f"NATS is not reachable at {NATS_URL}")
    load_before = os.getloadavg()
    started = time.monotonic()
    data = prepare_database(args.properties, args.hot_room_types)
    print(f"seeded {args.properties} properties, {len(data['room_types'])} room types in "
          f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    run_id = uuid.uuid4().hex[:10]
    namespace = f"plat{run_id}"
    env = {
        "STAYBOOK_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "STAYBOOK_PAYMENTS__WEBHOOK_SECRET": uuid.uuid4().hex,
        "STAYBOOK_IDENTITY__PII_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "STAYBOOK_DATABASE_URL": data["url"].replace("postgresql://", "postgresql+asyncpg://"),
        "STAYBOOK_ENVIRONMENT": "production",
        "STAYBOOK_REDIS_URL": REDIS_URL,
        "STAYBOOK_REDIS_KEY_PREFIX": f"plat{run_id}:",
        "STAYBOOK_NATS_URL": NATS_URL,
        "STAYBOOK_BUS_NAMESPACE": namespace,
        "STAYBOOK_HTTP_PORT": str(args.port),
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000",
        # Every simulated user signs in from one loopback address.
        "STAYBOOK_IDENTITY__LOGIN_PER_IP": "[100000000,300,1]",
        "STAYBOOK_IDENTITY__LOGIN_PER_ACCOUNT": "[100000000,900,1]",
        "STAYBOOK_IDENTITY__REGISTER_PER_IP": "[100000000,3600,1]",
        "STAYBOOK_BOOKING__HOLD_TTL_SECONDS": "60",
        "STAYBOOK_INVENTORY__HORIZON_DAYS": str(HORIZON_DAYS),
    }
    worker_log = Path(f"/tmp/staybook-bench-platform-worker-{run_id}.log")
    worker = subprocess.Popen(  # noqa: S603
        staybook_command("worker"), env={**os.environ, **env}, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT
    )
    command = staybook_command("serve", "--port", "{port}", "--workers", "2")
    results: dict = {}
    with (
        _streams_deleted(namespace),
        _terminated(worker),
        Server(command, env=env, port=args.port, startup_timeout=600) as server,
    ):
        import httpx

        emails, tokens = [], []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(args.users):
                email = f"bench{n}.{run_id}@example.com"
                client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": f"B{n}"})
                answer = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                answer.raise_for_status()
                emails.append(email)
                tokens.append(answer.json()["access_token"])
        print(f"{len(tokens)} users signed in; worker idle after {drained(data['url'], worker.pid)} s", flush=True)
        base = {
            "port": args.port,
            "connections": args.connections,
            "tokens": tokens,
            "emails": emails,
            "hot_share": 0.5,
            "seed": 11,
            **{k: data[k] for k in ("room_types", "hot_room_types", "properties", "points", "popular", "today")},
        }
        meter = CpuMeter(server.process.pid, worker.pid)

        def phase(name: str, rate: float, duration: float, weights: dict) -> dict:
            before = meter.snapshot()
            run = run_generators(base, rate=rate, duration=duration, weights=weights, count=args.generators)
            drained(data["url"], worker.pid)
            after = meter.snapshot()
            after["worker"] = cpu_seconds(worker.pid)
            cpu = CpuMeter.delta(before, after, run["elapsed_s"], run["generator_cpu_s"])
            figures = summarize(run, cpu)
            figures["target_rate"] = rate
            print(
                f"{name:<22} {figures['requests_per_s']:>8.1f} req/s (of {rate:.0f}) p50/p99/p99.9 "
                f"{figures['latency_ms'].get('p50')}/{figures['latency_ms'].get('p99')}/"
                f"{figures['latency_ms'].get('p99.9')} ms, errors {figures['errors']}, confirmed/s "
                f"{figures['confirmed_per_s']}, cores {cpu['cores_busy']}",
                flush=True,
            )
            return figures | {"_run": run}

        print(f"staybook serve pid {server.process.pid}, worker pid {worker.pid}", flush=True)
        phase("warm-up", min(100, args.rate), 5, WEIGHTS)
        if args.only:
            phase(f"only: {args.only}", args.alone_rate, args.duration, {args.only: 1})
            return
        mix = phase("mix", args.rate, args.duration, WEIGHTS)
        alone = {}
        for op in WEIGHTS:
            if op == "cancel":
                continue
            rate = args.alone_rate if op not in ("login", "booking") else args.alone_rate / 5
            alone[op] = phase(f"alone: {op}", rate, args.alone_duration, {op: 1})
        bookings = phase("bookings (contended)", args.booking_rate, args.duration, {"booking": 1})
        searches = phase("random searches", args.search_rate, args.duration, {"search_random": 1})

        # CPU of API + worker per scheduled operation, alone; the mix's against the sum of its parts.
        def app_cpu(figures: dict) -> float:
            return figures["cpu"]["seconds"]["api"] + figures["cpu"]["seconds"]["worker"]

        cost_alone = {op: app_cpu(f) / max(1, f["scheduled"]) for op, f in alone.items()}
        mix_ops = {op: 0 for op in WEIGHTS}
        total_weight = sum(w for op, w in WEIGHTS.items() if op in cost_alone)
        for op in cost_alone:
            mix_ops[op] = mix["scheduled"] * WEIGHTS[op] / total_weight
        predicted = sum(mix_ops[op] * cost_alone[op] for op in cost_alone)
        cpu_ratio = ratio(app_cpu(mix), predicted)

        every_confirmed = sum((p["_run"]["confirmed"] for p in (mix, bookings)), [])
        every_cancelled = sum((p["_run"]["cancelled"] for p in (mix, bookings)), [])
        oversold = oversold_nights(data["url"])
        lost = lost_confirmations(data["url"], every_confirmed, every_cancelled)
        for figures in (mix, bookings, searches, *alone.values()):
            figures.pop("_run")
        booking_e2e = bookings["by_operation"].get("booking_end_to_end", {})
        summary = {
            "mix_rps": mix["requests_per_s"],
            "mix_p99_ms": mix["latency_ms"].get("p99"),
            "mix_errors": mix["errors"],
            "bookings_per_s": bookings["confirmed_per_s"],
            "bookings_p99_ms": booking_e2e.get("p99"),
            "random_search_per_s": searches["requests_per_s"],
            "random_search_p99_ms": searches["latency_ms"].get("p99"),
            "oversold_nights": oversold,
            "lost_confirmations": lost,
            "cpu_ratio_mix_to_alone": cpu_ratio,
            "loadgen_core_share": mix["cpu"]["load_generator_share_of_cores"],
        }
        results = {
            "summary": summary,
            "topology": "staybook serve --workers 2 + one staybook worker, production mode, PostgreSQL "
            "(this run's database), Redis (key prefix), NATS JetStream (namespace), sandbox webhooks on",
            "properties": args.properties,
            "room_types": len(data["room_types"]),
            "hot_room_types_with_3_units": len(data["hot_room_types"]),
            "weights": WEIGHTS,
            "generators": args.generators,
            "mix": mix,
            "alone": alone,
            "cpu_ms_per_operation_alone": {k: round(v * 1000, 3) for k, v in cost_alone.items()},
            "bookings": bookings,
            "random_searches": searches,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    path = write_result("platform", results)
    print(json.dumps(results["summary"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
