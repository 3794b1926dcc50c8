"""The DR drill: kill the primary under booking load, recover, and measure RPO and RTO.

One run of one mode (`sync_standby`, `async_standby`, `wal_archive`):

1. a primary PostgreSQL cluster (WAL archived by pgBackRest) and, for the standby
   modes, a streaming hot standby, each on its own port;
2. staybook migrated and seeded on the primary, then N confirmed bookings loaded;
3. a full base backup, then an open-loop booking load through the HTTP API
   (hold then pay), every confirmation written to the client's log;
4. kill -9 of the primary at a random moment;
5. recovery: promote the standby, or restore the latest archived WAL into a new
   cluster; the API is restarted pointing at the new primary;
6. RPO: confirmations in the client's log that the new primary does not have
   (count, and seconds before the kill); RTO: from the kill to the first
   booking confirmed on the new primary;
7. the invariants: no oversold night, every confirmation present and unchanged,
   the loaded bookings all there, no hold stuck past its TTL, the outbox drained,
   every confirmation's event handled, and the audit chain valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx

from staybook.kernel.bus import delete_namespace_streams
from staybook.kernel.settings import BackupSettings
from staybook.recovery.pgbackrest import Repository
from staybook.recovery.postgres import LocalCluster, RecoveryError

MODES = ("sync_standby", "async_standby", "wal_archive")
# Room-nights whose held and confirmed bookings add up to more than the night's total: what the
# platform promises never happens, counted from the bookings rather than the inventory's counters.
OVERSOLD_NIGHTS_SQL = """
    WITH taken AS (
        SELECT b.room_type_id, n.night::date AS night, sum(b.units) AS units
        FROM bookings b, generate_series(b.check_in, b.check_out - 1, interval '1 day') AS n(night)
        WHERE b.status IN ('held', 'confirmed') GROUP BY 1, 2
    )
    SELECT count(*) FROM taken t JOIN room_nights r USING (room_type_id, night) WHERE t.units > r.total
"""
DATABASE = "staybook"


@dataclass
class DrillOptions:
    mode: str
    bookings: int = 1000
    base_dir: Path = Path("./staybook-dr")
    first_port: int = 25400
    rate_per_s: float = 10.0
    # The primary is killed at a random moment in this window after the load starts.
    kill_after_s: tuple[float, float] = (8.0, 14.0)
    # Load keeps running this long after the first confirmation on the new primary.
    settle_s: float = 3.0
    archive_timeout_s: int = 10
    hold_ttl_s: int = 30
    seed: int | None = None
    # Events go over JetStream, as in production, so the drill also checks that the bus is derivable.
    nats_url: str | None = None


@dataclass
class Confirmation:
    booking_id: str
    total_amount: int
    at: float  # wall clock, when the client read the confirmation
    started: float  # wall clock, when the flow sent its hold


@dataclass
class DrillResult:
    mode: str
    bookings_loaded: int
    rpo_bookings: int
    rpo_seconds: float
    rto_seconds: float | None
    invariants_ok: bool
    confirmed_before_kill: int
    confirmed_after_recovery: int
    requests_failed: int
    recovery_seconds: float
    restore_or_promote: str
    invariants: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def free_port(start: int) -> int:
    for port in range(start, start + 400):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RecoveryError(f"no free port from {start}")


class ApiProcess:
    """`staybook serve --with-worker` on one port, pointed at one database."""

    def __init__(
        self, port: int, database_url: str, work_dir: Path, hold_ttl_s: int, bus: tuple[str, str] | None
    ) -> None:
        self.port = port
        self.database_url = database_url
        self.work_dir = work_dir
        self.hold_ttl_s = hold_ttl_s
        self.bus = bus
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
        env.update(
            STAYBOOK_DATABASE_URL=self.database_url,
            STAYBOOK_ENVIRONMENT="development",
            STAYBOOK_HTTP_PORT=str(self.port),
            STAYBOOK_CATALOG__MEDIA_DIR=str(self.work_dir / "media"),
            # The drill's own audit anchors: another deployment's anchors would not match its chain.
            STAYBOOK_IDENTITY__AUDIT_ANCHOR_FILE=str(self.work_dir / "audit-anchors.jsonl"),
            STAYBOOK_BOOKING__HOLD_TTL_SECONDS=str(self.hold_ttl_s),
            # The drill is one client: the per-IP limit would throttle the load, not protect anything.
            STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS="100000000",
            STAYBOOK_LOG_LEVEL="WARNING",
        )
        if self.bus is not None:
            env.update(STAYBOOK_NATS_URL=self.bus[0], STAYBOOK_BUS_NAMESPACE=self.bus[1])
        return env

    def cli(self, *args: str, timeout: float = 900) -> str:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "staybook.cli", *args], env=self.env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RecoveryError(f"staybook {args[0]} failed: {(result.stderr or result.stdout).strip()[-400:]}")
        return result.stdout

    def start(self) -> None:
        log = (self.work_dir / f"api-{self.port}.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "staybook.cli", "serve", "--port", str(self.port), "--with-worker"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    async def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RecoveryError(f"the API exited with {self.process.returncode} (see {self.work_dir})")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RecoveryError("the API did not become ready")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class BookingLoad:
    """Open loop: a hold-then-pay flow starts every 1/rate s, whatever the earlier ones are doing."""

    def __init__(self, client: httpx.AsyncClient, token: str, stays: list[tuple[str, date]], rate: float) -> None:
        self.client = client
        self.token = token
        self.stays = stays
        self.rate = rate
        self.confirmations: list[Confirmation] = []
        self.failures = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._watch: tuple[float, asyncio.Event] | None = None

    async def first_confirmation_after(self, moment: float) -> None:
        """Returns once a booking whose flow started after `moment` (wall clock) is confirmed."""
        if any(c.started > moment for c in self.confirmations):
            return
        self._watch = (moment, asyncio.Event())
        await self._watch[1].wait()

    async def run(self) -> None:
        interval = 1 / self.rate
        start = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            task = asyncio.create_task(self._flow(sent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            sent += 1
            delay = start + sent * interval - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(delay, 0))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    def stop(self) -> None:
        self._stop.set()

    async def _flow(self, n: int) -> None:
        started = time.time()
        room_type_id, night = self.stays[n % len(self.stays)]
        headers = {"authorization": f"Bearer {self.token}"}
        body = {
            "room_type_id": room_type_id,
            "check_in": night.isoformat(),
            "check_out": (night + timedelta(days=1)).isoformat(),
            "guests": 1,
            "guest": {"name": "Drill Guest", "email": "drill.guest@example.com"},
        }
        try:
            hold = await self.client.post(
                "/api/v1/bookings", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
            )
            if hold.status_code != 201:
                self.failures += 1
                return
            booking = hold.json()
            pay = await self.client.post(
                f"/api/v1/bookings/{booking['id']}/payment",
                json={"payment_method": "tok_success"},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            answer = pay.json() if pay.status_code < 300 else {}
            if answer.get("outcome") == "confirmed":
                total = int(answer["booking"]["total"]["amount"])
                confirmation = Confirmation(booking["id"], total, time.time(), started)
                self.confirmations.append(confirmation)
                if self._watch is not None and confirmation.started > self._watch[0]:
                    self._watch[1].set()
            else:
                self.failures += 1
        except (httpx.HTTPError, ValueError, KeyError):
            self.failures += 1


async def run_drill(options: DrillOptions, progress: Callable[[str], None] = print) -> DrillResult:
    if options.mode not in MODES:
        raise RecoveryError(f"mode must be one of {', '.join(MODES)}")
    rng = random.Random(options.seed)
    base = options.base_dir.resolve() / options.mode
    if base.exists():
        for cluster_dir in ("primary", "standby", "restored"):
            LocalCluster(base / cluster_dir, 1).destroy()
        shutil.rmtree(base)
    base.mkdir(parents=True)
    base.chmod(0o755)
    timings: dict[str, float] = {}

    primary_port = free_port(options.first_port)
    second_port = free_port(primary_port + 1)
    api_port = free_port(second_port + 1)
    sockets = base / "sockets"
    primary = LocalCluster(base / "primary", primary_port, socket_dir=sockets)
    repository = Repository(
        BackupSettings(
            repo_path=base / "repo",
            work_dir=base / "pgbackrest",
            pg_data_dir=primary.data_dir,
            pg_port=primary_port,
            pg_socket_dir=str(sockets),
            archive_timeout_seconds=options.archive_timeout_s,
            cipher_pass=os.environ.get("STAYBOOK_BACKUP__CIPHER_PASS") or uuid.uuid4().hex,
        )
    )
    repository.write_config()
    standby: LocalCluster | None = None
    api: ApiProcess | None = None
    try:
        started = time.monotonic()
        primary.init(**repository.server_parameters())
        primary.start()
        primary.create_database(DATABASE)
        repository.create_stanza()
        if options.mode != "wal_archive":
            standby = primary.make_standby(base / "standby", second_port, synchronous=options.mode == "sync_standby")
        timings["clusters_s"] = time.monotonic() - started
        progress(f"primary on :{primary_port}" + (f", standby on :{second_port}" if standby else ""))

        bus = (options.nats_url, "dr" + uuid.uuid4().hex[:10]) if options.nats_url else None
        api = ApiProcess(api_port, primary.url(DATABASE), base, options.hold_ttl_s, bus)
        started = time.monotonic()
        api.cli("migrate")
        # A seeded property has about 590 free unit-nights past the load window (1,270 took 746K bookings).
        properties = max(20, min(20_000, options.bookings // 500 + 20))
        accounts = _seed_summary(api.cli("seed", "--properties", str(properties)))["identity"]["accounts"]
        timings["migrate_and_seed_s"] = time.monotonic() - started
        passwords = {account["role"]: (account["email"], account["password"]) for account in accounts}
        api.start()
        await api.wait_ready()

        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            guest_token = await _login(client, *passwords["guest"])
            stays = _stays(primary, rng, count=5000)
            template = BookingLoad(client, guest_token, stays[:1], rate=1)
            await template._flow(0)
            if not template.confirmations:
                raise RecoveryError("the drill could not confirm a first booking through the API")
            started = time.monotonic()
            loaded = _load_bookings(primary, template.confirmations[0].booking_id, options.bookings - 1) + 1
            timings["load_bookings_s"] = time.monotonic() - started
            progress(f"{loaded} confirmed bookings loaded")

            started = time.monotonic()
            repository.backup("full")
            timings["base_backup_s"] = time.monotonic() - started
            progress(f"full backup taken in {timings['base_backup_s']:.1f} s")

            load = BookingLoad(client, guest_token, stays[1:], options.rate_per_s)
            load_task = asyncio.create_task(load.run())
            await asyncio.sleep(rng.uniform(*options.kill_after_s))
            killed_at = time.time()
            await asyncio.to_thread(primary.kill)
            confirmed_before_kill = sum(1 for c in load.confirmations if c.at <= killed_at)
            progress(f"primary killed (-9) after {confirmed_before_kill} confirmations under load")

            recovery_started = time.monotonic()
            # Blocking steps run in a thread: the load keeps its schedule and its clock stays honest.
            if standby is not None:
                await asyncio.to_thread(standby.promote)
                new_primary = standby
                how = "promoted the standby"
            else:
                new_primary = LocalCluster(base / "restored", second_port, socket_dir=sockets)
                await asyncio.to_thread(repository.restore, new_primary.data_dir, port=second_port)
                # The drill ends here; a real failover keeps archiving from the new timeline.
                new_primary.configure(archive_mode="off")
                await asyncio.to_thread(new_primary.start)
                await asyncio.to_thread(new_primary.wait_until_primary)
                how = "restored the latest archived WAL"
            timings["recovery_step_s"] = time.monotonic() - recovery_started
            await asyncio.to_thread(api.stop)
            api = ApiProcess(api_port, new_primary.url(DATABASE), base, options.hold_ttl_s, bus)
            api.start()
            await api.wait_ready()
            recovery_seconds = time.monotonic() - recovery_started
            progress(f"{how}; API back in {recovery_seconds:.1f} s")

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.first_confirmation_after(killed_at), timeout=120)
            await asyncio.sleep(options.settle_s)
            load.stop()
            await load_task

            after = [c for c in load.confirmations if c.at > killed_at]
            # RTO: the first booking the new primary confirmed. A flow sent before the kill may have
            # committed before it and been read after it; it says nothing about the recovery.
            recovered = [c.at for c in after if c.started > killed_at]
            rto = (min(recovered) - killed_at) if recovered else None
            before = [c for c in load.confirmations if c.at <= killed_at]
            present = _bookings(new_primary, [c.booking_id for c in load.confirmations])
            lost = [c for c in before if present.get(c.booking_id, (None,))[0] != "confirmed"]
            # Kept but different: a confirmed booking whose price moved, or one that is no longer confirmed
            # although it was confirmed after the recovery (a loss before the kill is counted as RPO).
            changed = [
                c for c in load.confirmations
                if c not in lost and c.booking_id in present and present[c.booking_id] != ("confirmed", c.total_amount)
            ]  # fmt: skip
            rpo_seconds = (killed_at - min(c.at for c in lost)) if lost else 0.0

            admin_token = await _login(client, *passwords["admin"])
            invariants = await _invariants(client, admin_token, new_primary, loaded, after, present, changed)
        return DrillResult(
            mode=options.mode,
            bookings_loaded=loaded,
            rpo_bookings=len(lost),
            rpo_seconds=round(rpo_seconds, 3),
            rto_seconds=None if rto is None else round(rto, 3),
            invariants_ok=all(invariants["checks"].values()),
            confirmed_before_kill=len(before),
            confirmed_after_recovery=len(after),
            requests_failed=load.failures,
            recovery_seconds=round(recovery_seconds, 3),
            restore_or_promote=how,
            invariants=invariants,
            timings={k: round(v, 3) for k, v in timings.items()},
        )
    finally:
        if api is not None:
            api.stop()
            if api.bus is not None:
                # Cleanup must not hide the drill's own outcome.
                with contextlib.suppress(Exception):
                    await delete_namespace_streams(*api.bus)
        for cluster in (primary, standby, LocalCluster(base / "restored", second_port, socket_dir=sockets)):
            if cluster is not None:
                cluster.destroy()


def _seed_summary(output: str) -> dict:
    """The JSON summary `staybook seed` prints last (log lines may come before it)."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


async def _login(client: httpx.AsyncClient, email: str, password: str) -> str:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    if answer.status_code != 200:
        raise RecoveryError(f"sign-in of {email} failed: {answer.status_code}")
    return answer.json()["access_token"]


def _stays(cluster: LocalCluster, rng: random.Random, count: int) -> list[tuple[str, date]]:
    """One-night stays with a free unit, for the load: spread over many room types and nights."""
    rows = cluster.query(
        "SELECT room_type_id::text, night FROM room_nights WHERE total - held - booked >= 1 AND NOT closed "
        "AND NOT closed_to_arrival AND min_stay = 1 AND night BETWEEN current_date + 14 AND current_date + 120 "
        "ORDER BY random() LIMIT %s",
        (count,),
        database=DATABASE,
    )
    rng.shuffle(rows)
    return [(room_type_id, night) for room_type_id, night in rows]


def _load_bookings(cluster: LocalCluster, template_id: str, count: int) -> int:
    """Clones a confirmed booking onto `count` free room-nights, taking a unit of each, in one statement.

    Whatever columns the bookings table has, they are copied from the template, so the
    loader follows the schema; the stay, the reference and the id are each clone's own.
    """
    if count <= 0:
        return 0
    columns = [
        row[0]
        for row in cluster.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'bookings' "
            "ORDER BY ordinal_position",
            database=DATABASE,
        )
    ]
    own = {
        "id": "gen_random_uuid()",
        "reference": "'L' || lpad(p.n::text, 11, '0')",
        "room_type_id": "p.room_type_id",
        "property_id": "p.property_id",
        "check_in": "p.night",
        "check_out": "p.night + 1",
        "units": "1",
        "status": "'confirmed'",
    }
    select = ", ".join(own.get(column, f't."{column}"') for column in columns)
    names = ", ".join(f'"{column}"' for column in columns)
    with cluster.connect(DATABASE) as conn:
        cursor = conn.execute(
            f"""
            WITH picks AS (
                SELECT room_type_id, property_id, night, row_number() OVER () AS n FROM (
                    SELECT room_type_id, property_id, night FROM room_nights
                    WHERE total - held - booked >= 1 AND night > current_date + 120
                    ORDER BY random() LIMIT %(count)s) free
            ), taken AS (
                UPDATE room_nights rn SET booked = rn.booked + 1 FROM picks p
                WHERE rn.room_type_id = p.room_type_id AND rn.night = p.night
            )
            INSERT INTO bookings ({names})
            SELECT {select} FROM picks p CROSS JOIN (SELECT * FROM bookings WHERE id = %(template)s) t
            """,
            {"count": count, "template": template_id},
        )
        return cursor.rowcount


def _bookings(cluster: LocalCluster, ids: list[str]) -> dict[str, tuple[str, int]]:
    if not ids:
        return {}
    rows = cluster.query(
        "SELECT id::text, status, total_amount FROM bookings WHERE id = ANY(%s::uuid[])", (ids,), database=DATABASE
    )
    return {booking_id: (status, total) for booking_id, status, total in rows}


async def _invariants(client, admin_token, cluster, loaded, after, present, changed) -> dict:
    """The checks of step 7; waits (bounded) for the worker to expire holds and drain the outbox."""

    def count(sql: str) -> int:
        return int(cluster.query(sql, database=DATABASE)[0][0])

    oversold = count(OVERSOLD_NIGHTS_SQL)
    loaded_present = count("SELECT count(*) FROM bookings WHERE reference LIKE 'L%' AND status = 'confirmed'") + 1
    deadline = time.monotonic() + 120
    while True:
        stuck = count("SELECT count(*) FROM bookings WHERE status = 'held' AND expires_at < now() - interval '15 s'")
        unpublished = count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        # Every confirmation's event reached a consumer: the outbox and the inboxes agree.
        unhandled = count(
            "SELECT count(*) FROM outbox o WHERE o.event_type = 'booking.confirmed' "
            "AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.id)"
        )
        if (stuck == 0 and unpublished == 0 and unhandled == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    answer = await client.get("/api/v1/admin/audit-log/verify", headers={"authorization": f"Bearer {admin_token}"})
    audit = answer.json() if answer.status_code == 200 else {"status": answer.status_code}
    missing_after = [c.booking_id for c in after if present.get(c.booking_id, (None,))[0] != "confirmed"]
    checks = {
        "no_oversold_night": oversold == 0,
        "confirmations_unchanged": not changed,
        "confirmations_after_recovery_present": not missing_after,
        "loaded_bookings_present": loaded_present == loaded,
        "no_hold_stuck_past_ttl": stuck == 0,
        "outbox_drained": unpublished == 0,
        "confirmation_events_handled": unhandled == 0,
        "audit_chain_valid": bool(audit.get("valid")),
    }
    return {
        "checks": checks,
        "oversold_nights": oversold,
        "changed_confirmations": len(changed),
        "loaded_present": loaded_present,
        "stuck_holds": stuck,
        "unpublished_events": unpublished,
        "unhandled_confirmation_events": unhandled,
        "audit": audit,
    }


def result_dict(result: DrillResult) -> dict:
    return asdict(result)
