"""Chaos, automated: a bounded booking load against the production topology, with faults injected one after another.

`staybook stack up` (staybook.stack) starts the topology under a directory of this run's own, on
ports of its own (PostgreSQL behind PgBouncer, Redis, NATS JetStream, Typesense, 2 API workers,
1 worker; never the machine's shared servers). An open-loop load (hold, then pay with the
sandbox provider, whose signed webhooks the worker delivers) runs throughout, and these faults
come one after another:

| fault | what is done |
|---|---|
| `worker_kill` | kill -9 of the `staybook worker`, restarted after a few seconds |
| `api_worker_kill` | kill -9 of one API worker process (the supervisor starts another) |
| `postgres_restart` | `pg_ctl stop -m fast` of the stack's own cluster, started again after `--postgres-down` s (5) |
| `redis_down` | Redis killed, started again on its port after `--redis-down` s (30) |
| `nats_down` | NATS killed, started again on its port (same JetStream store) after `--nats-down` s (60) |
| `provider_outage` | the payment provider times out or fails (HTTP 500 at a real one) for `--provider-down` s |

The provider outage uses the sandbox's test tokens (`tok_timeout`: the charge goes on after
the client gave up and a webhook settles it; `tok_provider_error`: nothing is charged, the
booking stays held): payments made during it carry them, and the guests whose booking stayed
held pay again once it is over.

After each fault, and at the end, these must hold (the summary has one object per fault):
0 lost confirmations (a booking the client saw confirmed that is not confirmed), 0 oversold
nights (recovery.drill.OVERSOLD_NIGHTS_SQL), the outbox drained, no saga stuck past its TTL,
no 500 and no connection reset while a dependency is down (5xx answers are 502/503
problem+json), every search sent while PostgreSQL is down answered 200 (from the index), and
every booking the guest was told is pending (202) confirmed by the platform itself. A killed
API worker drops the connections it held: the client retries those
with the same Idempotency-Key, and the reset is counted (`resets`) with whether the retry
settled it (`unsettled_after_retry`).

    flock /work/wt/bench.lock .venv/bin/python -m bench.chaos [--ports 18000-18049] [--rate 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg

from bench.booking import CALENDAR_DAYS, START, seed
from bench.harness import write_result
from staybook.kernel.security import TokenSigner
from staybook.kernel.settings import Settings
from staybook.processes import Process, Stack, children_of, http_ok, port_open, start_ticks, wait_until
from staybook.recovery.drill import OVERSOLD_NIGHTS_SQL
from staybook.recovery.postgres import LocalCluster
from staybook.stack import up

HOLD_TTL_S = 90
PROVIDER_TIMEOUT_S = 2
# A saga still in flight this long after its last step, or a hold this long past its expiry, is stuck:
# the worker's expiry and recovery passes (every few seconds) should have ended it.
STUCK_SLACK_S = 30
STUCK_SQL = f"""
    SELECT count(*) FROM booking_sagas s JOIN bookings b ON b.id = s.booking_id
    WHERE (b.status = 'held' AND b.expires_at < now() - interval '{STUCK_SLACK_S} s')
       OR (s.step IN ('authorising', 'capturing', 'voiding', 'refunding', 'cancel_refunding')
           AND s.updated_at < now() - interval '{HOLD_TTL_S + STUCK_SLACK_S} s')
"""
OUTBOX_BACKLOG_SQL = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
# The settings the drill runs the stack with, on top of its production ones.
OVERRIDES = {
    # One client address sends the whole load: the per-IP limit would throttle it, not protect anything.
    "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000",
    "STAYBOOK_BOOKING__HOLD_TTL_SECONDS": str(HOLD_TTL_S),
    "STAYBOOK_BOOKING__RECOVERY_GRACE_SECONDS": "15",
    "STAYBOOK_PAYMENTS__PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT_S),
    "STAYBOOK_LOG_LEVEL": "WARNING",
}
DEPENDENCY_FAULTS = {"postgres_restart", "redis_down", "nats_down", "provider_outage"}


# ------------------------------------------------------------------ the load


@dataclass
class Window:
    """What the clients saw while one fault was injected and recovered from."""

    name: str
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    # No answer: connection refused, reset or closed mid-request.
    resets: int = 0
    reset_errors: Counter = field(default_factory=Counter)
    # No answer within the client's timeout (30 s).
    timeouts: int = 0
    unsettled_after_retry: int = 0
    # 5xx answers that are not problem+json.
    unclean_5xx: int = 0
    flows: int = 0
    confirmed: int = 0
    # The payments' outcomes: confirmed, pending (202: the provider had not answered in time), ...
    outcomes: Counter = field(default_factory=Counter)
    # The first answer of each error status, to say what the clients were told.
    samples: dict = field(default_factory=dict)
    # A search a second beside the bookings (a few queries, so the response cache serves repeats).
    searches: Counter = field(default_factory=Counter)
    search_samples: dict = field(default_factory=dict)
    # The searches sent while PostgreSQL was down (from its stop to its start): answered from the index.
    searches_while_database_down: Counter = field(default_factory=Counter)


class ChaosLoad:
    """Open loop: a hold-then-pay flow starts every 1/rate s whatever the earlier ones are doing.

    Each request counts in the window current when its flow started. A request that got no answer is
    sent once more with the same Idempotency-Key (what a client does), after a second."""

    def __init__(self, api_url: str, tokens: list[str], room_types: list[str], rate: float, seed_value: int = 1):
        self.client = httpx.AsyncClient(base_url=api_url, timeout=30, limits=httpx.Limits(max_connections=64))
        self.tokens = tokens
        self.room_types = room_types
        self.rate = rate
        self.rng = random.Random(seed_value)
        self.window = Window("baseline")
        self.windows = [self.window]
        self.payment_tokens = itertools.repeat("tok_success")
        self.confirmed: dict[str, int] = {}  # booking id -> total the client was told
        self.pending: set[str] = set()  # 202: the provider had not answered
        self.held_after_provider_error: dict[str, str] = {}  # booking id -> the guest's token
        self.confirmed_at: list[tuple[float, float]] = []  # (flow started, confirmed) monotonic
        self.database_down = False  # set by the postgres_restart fault from the stop to the start
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def begin(self, name: str) -> Window:
        self.window = Window(name)
        self.windows.append(self.window)
        return self.window

    async def search(self) -> None:
        n = 0
        while not self._stop.is_set():
            window, n = self.window, n + 1
            outage = window.searches_while_database_down if self.database_down else Counter()
            check_in = START + timedelta(days=n % 5)
            query = {"city": "Lisbon", "check_in": check_in.isoformat(),
                     "check_out": (check_in + timedelta(days=2)).isoformat(), "guests": 2}  # fmt: skip
            try:
                answer = await self.client.get("/api/v1/search", params=query)
                window.searches[str(answer.status_code)] += 1
                outage[str(answer.status_code)] += 1
                if answer.status_code >= 400 and answer.status_code not in window.search_samples:
                    window.search_samples[answer.status_code] = answer.text[:300]
                if answer.status_code >= 500 and not answer.headers.get("content-type", "").startswith(
                    "application/problem+json"
                ):
                    window.unclean_5xx += 1
            except httpx.TransportError:
                window.searches["reset"] += 1
                outage["reset"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1)

    async def run(self) -> None:
        searching = asyncio.create_task(self.search())
        start, sent = time.monotonic(), 0
        while not self._stop.is_set():
            task = asyncio.create_task(self._flow(sent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            sent += 1
            delay = start + sent / self.rate - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(delay, 0))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=60)
        await searching

    async def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        await self.client.aclose()

    async def _send(self, window: Window, path: str, token: str, body: dict) -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(2):
            window.requests += 1
            try:
                response = await self.client.post(path, json=body, headers=headers)
            except httpx.TransportError as error:
                # A timeout is the client giving up on a slow answer, not the server dropping the connection.
                if isinstance(error, httpx.TimeoutException):
                    window.timeouts += 1
                else:
                    window.resets += 1
                    window.reset_errors[type(error).__name__] += 1
                if attempt == 0:
                    await asyncio.sleep(1)
                    continue
                window.unsettled_after_retry += 1
                return None
            window.statuses[response.status_code] += 1
            if response.status_code >= 400 and response.status_code not in window.samples:
                window.samples[response.status_code] = response.text[:300]
            if response.status_code >= 500 and not response.headers.get("content-type", "").startswith(
                "application/problem+json"
            ):
                window.unclean_5xx += 1
            return response
        return None

    async def _flow(self, n: int) -> None:
        window, started = self.window, time.monotonic()
        window.flows += 1
        token = self.tokens[n % len(self.tokens)]
        check_in = START + timedelta(days=self.rng.randrange(0, CALENDAR_DAYS - 4))
        body = {
            "room_type_id": self.rng.choice(self.room_types),
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=self.rng.randrange(1, 4))).isoformat(),
            "guests": 2,
            "guest": {"name": "Chaos Guest", "email": "chaos.guest@example.com"},
        }
        hold = await self._send(window, "/api/v1/bookings", token, body)
        if hold is None or hold.status_code != 201:
            return
        booking_id = hold.json()["id"]
        await self.pay(window, booking_id, token, next(self.payment_tokens), started)

    async def pay(self, window: Window, booking_id: str, token: str, method: str, started: float) -> None:
        paid = await self._send(window, f"/api/v1/bookings/{booking_id}/payment", token, {"payment_method": method})
        if paid is None:
            return
        answer = paid.json() if paid.headers.get("content-type", "").endswith("json") else {}
        window.outcomes[answer.get("outcome") or str(paid.status_code)] += 1
        if paid.status_code == 200 and answer.get("outcome") == "confirmed":
            self.confirmed[booking_id] = int(answer["booking"]["total"]["amount"])
            self.confirmed_at.append((started, time.monotonic()))
            window.confirmed += 1
        elif paid.status_code == 202:
            self.pending.add(booking_id)
        elif paid.status_code in (502, 503) and answer.get("booking_status") == "held":
            self.held_after_provider_error[booking_id] = token

    async def pay_again(self) -> None:
        """The guests told their booking is still held pay again (the provider is back)."""
        window = self.window
        held, self.held_after_provider_error = self.held_after_provider_error, {}
        await asyncio.gather(
            *(self.pay(window, b, token, "tok_success", time.monotonic()) for b, token in held.items())
        )

    async def first_confirmation_after(self, moment: float, timeout: float = 180) -> float | None:
        """Seconds from `moment` until a flow started after it was confirmed; None if none in `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [at for began, at in self.confirmed_at if began >= moment]
            if done:
                return min(done) - moment
            await asyncio.sleep(0.2)
        return None


# ------------------------------------------------------------------ the system


class System:
    """The stack under test: its processes, its database, and the faults that can be done to it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        postgres = stack.get("postgres")
        self.database_url = postgres.url
        self.cluster = LocalCluster(
            stack.root / "postgres" / "data", postgres.port, socket_dir=stack.root / "postgres" / "run"
        )

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
        return {**base, **self.stack.settings}

    def query(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def kill(self, name: str) -> Process:
        process = self.stack.get(name)
        process._signal(signal.SIGKILL)
        wait_until(lambda: not process.alive, 10)
        return process

    def restart(self, name: str) -> Process:
        env = self.env() if name in ("worker",) else None
        process = self.stack.relaunch(name, env)
        if process.port is not None:
            wait_until(lambda: port_open(process.port), 60, 0.1)
        if name == "nats":
            monitor = process.extra["monitor_port"]
            wait_until(lambda: http_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"), 60, 0.2)
        return process

    def reindex_search(self) -> None:
        """The seeded properties into the search index (they were written straight to the database)."""
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "staybook.cli", "search", "reindex"], env=self.env(), check=True,
            capture_output=True, timeout=600,
        )  # fmt: skip

    def api_workers(self) -> list[int]:
        api = self.stack.get("api")
        return [pid for pid in children_of(api.pid) if start_ticks(pid) is not None]

    def restart_postgres(self, down: float = 0.0) -> None:
        self.cluster.stop("fast")
        time.sleep(down)
        self.cluster.start()
        pid = self.cluster.pid
        old = self.stack.get("postgres")
        self.stack.replace(
            Process("postgres", pid, start_ticks(pid), port=old.port, url=old.url, log=old.log,
                    stop_signal=signal.SIGINT, group=False)
        )  # fmt: skip


# ------------------------------------------------------------------ faults


async def worker_kill(system: System, load: ChaosLoad, options) -> None:
    await asyncio.to_thread(system.kill, "worker")
    await asyncio.sleep(options.worker_down)
    await asyncio.to_thread(system.restart, "worker")


async def api_worker_kill(system: System, load: ChaosLoad, options) -> None:
    before = system.api_workers()
    victim = random.Random(options.seed).choice(before)
    os.kill(victim, signal.SIGKILL)
    # uvicorn's supervisor notices the dead worker and starts another.
    await asyncio.to_thread(
        wait_until, lambda: victim not in system.api_workers() and len(system.api_workers()) >= len(before), 120, 0.2
    )


async def postgres_restart(system: System, load: ChaosLoad, options) -> None:
    load.database_down = True
    try:
        await asyncio.to_thread(system.restart_postgres, options.postgres_down)
    finally:
        load.database_down = False


async def redis_down(system: System, load: ChaosLoad, options) -> None:
    await asyncio.to_thread(system.kill, "redis")
    await asyncio.sleep(options.redis_down)
    await asyncio.to_thread(system.restart, "redis")


async def nats_down(system: System, load: ChaosLoad, options) -> None:
    await asyncio.to_thread(system.kill, "nats")
    await asyncio.sleep(options.nats_down)
    await asyncio.to_thread(system.restart, "nats")


async def provider_outage(system: System, load: ChaosLoad, options) -> None:
    load.payment_tokens = itertools.cycle(["tok_timeout", "tok_provider_error"])
    await asyncio.sleep(options.provider_down)
    load.payment_tokens = itertools.repeat("tok_success")
    await load.pay_again()


FAULTS = {
    "worker_kill": worker_kill,
    "api_worker_kill": api_worker_kill,
    "postgres_restart": postgres_restart,
    "redis_down": redis_down,
    "nats_down": nats_down,
    "provider_outage": provider_outage,
}


# ------------------------------------------------------------------ checks


async def invariants(system: System, load: ChaosLoad, timeout: float = 240) -> dict:
    """Waits (bounded) for the worker to drain the outbox and settle sagas, then reads the invariants."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            backlog = system.query(OUTBOX_BACKLOG_SQL)[0][0]
            stuck = system.query(STUCK_SQL)[0][0]
            unsettled_pending = system.query(
                "SELECT count(*) FROM bookings WHERE id = ANY(%s::uuid[]) AND status = 'held'", (list(load.pending),)
            )[0][0]
        except psycopg.OperationalError:
            backlog = stuck = unsettled_pending = -1
        if (backlog == 0 and stuck == 0 and unsettled_pending == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    rows = dict(
        system.query("SELECT id::text, status FROM bookings WHERE id = ANY(%s::uuid[])", (list(load.confirmed),))
    )
    lost = sum(1 for booking_id in load.confirmed if rows.get(booking_id) != "confirmed")
    # The guests told "pending" (202): the platform completes each one itself once the provider answers.
    pending_confirmed = system.query(
        "SELECT count(*) FROM bookings WHERE id = ANY(%s::uuid[]) AND status = 'confirmed'", (list(load.pending),)
    )[0][0]
    return {
        "lost": lost,
        "oversold": system.query(OVERSOLD_NIGHTS_SQL)[0][0],
        "outbox_drained": backlog == 0,
        "outbox_backlog": backlog,
        "stuck_sagas": stuck,
        "pending_unsettled": unsettled_pending,
        "pending_told": len(load.pending),
        "pending_confirmed": pending_confirmed,
    }


def summarize(window: Window, checks: dict, recovered_in: float | None, dependency: bool) -> dict:
    status_5xx = sum(count for status, count in window.statuses.items() if status >= 500)
    summary = {
        "requests": window.requests,
        "flows": window.flows,
        "confirmed": window.confirmed,
        "payment_outcomes": dict(sorted(window.outcomes.items())),
        "errors_by_status": {str(s): c for s, c in sorted(window.statuses.items()) if s >= 400},
        "status_500": window.statuses.get(500, 0),
        "status_5xx": status_5xx,
        "unclean_5xx": window.unclean_5xx,
        "resets": window.resets,
        "reset_errors": dict(window.reset_errors),
        "timeouts": window.timeouts,
        "unsettled_after_retry": window.unsettled_after_retry,
        **checks,
        "recovered_in_seconds": None if recovered_in is None else round(recovered_in, 1),
        "answers": {str(s): text for s, text in sorted(window.samples.items())},
        "searches": dict(sorted(window.searches.items())),
        "search_answers": {str(s): text for s, text in sorted(window.search_samples.items())},
        "searches_while_database_down": dict(sorted(window.searches_while_database_down.items())),
    }
    clean = summary["status_500"] == 0 and summary["unclean_5xx"] == 0 and "500" not in window.searches
    # Search answers from its index while PostgreSQL is down; a restart that saw no search proves nothing.
    outage = window.searches_while_database_down
    searched_through = set(outage) <= {"200"} and (window.name != "postgres_restart" or outage["200"] > 0)
    if dependency and window.searches.get("reset"):
        clean = False
    # A dependency going away must never reset a client's connection; a killed API process resets the
    # connections it held, and the client's retry must settle them.
    unanswered = summary["resets"] + summary["timeouts"]
    connections_ok = unanswered == 0 if dependency else summary["unsettled_after_retry"] == 0
    summary["ok"] = bool(
        clean and connections_ok and searched_through and checks["lost"] == 0 and checks["oversold"] == 0
        and checks["outbox_drained"] and checks["stuck_sagas"] == 0 and checks["pending_unsettled"] == 0
        and checks["pending_confirmed"] == checks["pending_told"] and recovered_in is not None
        and (window.flows == 0 or window.confirmed > 0)
    )  # fmt: skip
    return summary


# ------------------------------------------------------------------ the run


@dataclass
class Options:
    faults: list[str]
    ports: str = "18000-18049"
    rate: float = 4.0
    room_types: int = 40
    units: int = 3
    settle: float = 20.0  # seconds of plain load between faults
    worker_down: float = 5.0
    redis_down: float = 30.0
    nats_down: float = 60.0
    provider_down: float = 30.0
    # PostgreSQL stays stopped this long in postgres_restart (searches must be answered meanwhile).
    postgres_down: float = 5.0
    seed: int = 7
    root: Path | None = None
    progress: callable = print


async def _drive(system: System, options: Options, tokens: list[str], room_types: list[str]) -> dict:
    load = ChaosLoad(system.stack.get("api").url, tokens, room_types, options.rate, options.seed)
    runner = asyncio.create_task(load.run())
    summaries: dict[str, dict] = {}
    try:
        await asyncio.sleep(options.settle)
        summaries["baseline"] = summarize(load.window, await invariants(system, load), 0.0, True)
        options.progress(f"baseline: {json.dumps(summaries['baseline'])}")
        for name in options.faults:
            window = load.begin(name)
            options.progress(f"{name}: injecting")
            await FAULTS[name](system, load, options)
            cleared = time.monotonic()
            recovered_in = await load.first_confirmation_after(cleared)
            await asyncio.sleep(options.settle)
            checks = await invariants(system, load)
            summaries[name] = summarize(window, checks, recovered_in, name in DEPENDENCY_FAULTS)
            options.progress(f"{name}: {json.dumps(summaries[name])}")
        window = load.begin("end")
        await load.stop()
        await runner
        summaries["end"] = summarize(window, await invariants(system, load), 0.0, False)
        options.progress(f"end: {json.dumps(summaries['end'])}")
    finally:
        await load.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 90)
        await load.close()
    return summaries


def run(options: Options) -> dict:
    """Starts the stack, runs the load with each fault, stops exactly what it started; the summaries."""
    base = options.root or Path(tempfile.mkdtemp(prefix="staybook-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # PostgreSQL's owner must reach its data directory
    root = base / "stack"
    stack = None
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        stack = up(root, options.ports, options.progress, overrides=OVERRIDES)
        system = System(stack)
        room_types = seed(system.database_url, options.room_types, units=options.units)
        system.reindex_search()
        settings = Settings(environment="test", secret_key=stack.secrets()["secret_key"])
        signer = TokenSigner(settings)
        tokens = [signer.issue(uuid.uuid4(), "guest") for _ in range(200)]
        summaries = asyncio.run(_drive(system, options, tokens, room_types))
    finally:
        if stack is not None:
            stack.stop_all(20, options.progress)
        if options.root is None:
            shutil.rmtree(base, ignore_errors=True)
    return {
        "summary": summaries,
        "ok": all(s["ok"] for s in summaries.values()),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, in order")
    parser.add_argument("--ports", default="18000-18049")
    parser.add_argument("--rate", type=float, default=4.0, help="booking flows started per second")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of plain load around each fault")
    parser.add_argument("--redis-down", type=float, default=30.0)
    parser.add_argument("--nats-down", type=float, default=60.0)
    parser.add_argument("--provider-down", type=float, default=30.0)
    parser.add_argument("--postgres-down", type=float, default=5.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--name", default="chaos", help="result file bench/results/<name>.json")
    parser.add_argument("--dir", type=Path, default=None, help="keep the stack's directory (logs) here")
    args = parser.parse_args()
    options = Options(
        faults=args.faults.split(","), ports=args.ports, rate=args.rate, settle=args.settle,
        redis_down=args.redis_down, nats_down=args.nats_down, provider_down=args.provider_down,
        postgres_down=args.postgres_down, root=args.dir,
    )  # fmt: skip
    outcome = run(options)
    result = write_result(
        args.name,
        {
            **outcome,
            "what": "open-loop hold -> pay load (sandbox provider, webhooks on) against `staybook stack` (PgBouncer, "
            "2 API workers, 1 worker, Redis, NATS JetStream), faults injected one after another",
            "command": "flock /work/wt/bench.lock .venv/bin/python -m bench.chaos",
            "rate_per_s": options.rate,
            "faults": {
                "worker_kill": f"kill -9 of the worker, restarted after {options.worker_down:.0f} s",
                "api_worker_kill": "kill -9 of one of the 2 API worker processes; uvicorn's supervisor starts another",
                "postgres_restart": f"pg_ctl stop -m fast of the stack's cluster (behind PgBouncer), started again "
                f"after {options.postgres_down:.0f} s",
                "redis_down": f"Redis killed, back on its port after {options.redis_down:.0f} s",
                "nats_down": f"NATS killed, back on its port (same JetStream store) after {options.nats_down:.0f} s",
                "provider_outage": f"{options.provider_down:.0f} s of payments with tok_timeout / tok_provider_error "
                "(provider timing out after the client's "
                f"{PROVIDER_TIMEOUT_S} s / failing); the guests left held pay again after",
            },
        },
    )
    print(f"wrote {result}; ok={outcome['ok']}")


if __name__ == "__main__":
    main()
