"""The booking path through PgBouncer (Debian's 1.18), as `staybook stack` runs it (docs/adr/0018).

A PgBouncer of the test's own in front of the machine's PostgreSQL, a fresh database migrated
straight to PostgreSQL (as the stack's migrate does), then the API in-process with its worker,
Redis and NATS, every statement through PgBouncer: session pooling with prepared statements
(the stack's mode), and transaction pooling with `database_prepared_statements=false`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import pytest
from sqlalchemy import func, select

from staybook import migrate
from staybook.kernel.models import OutboxMessage
from staybook.kernel.settings import Settings
from staybook.processes import Ports
from staybook.stack import pgbouncer_command, write_pgbouncer_config
from tests.bookings import START, hold_body, night_counts, seed_room_type
from tests.conftest import PG_ADMIN_URL, _admin_connect, bearer, need

pytestmark = pytest.mark.integration

# This test's PgBouncers listen here (two xdist workers may run one each).
PORTS = "16490-16495"


@pytest.fixture(scope="module")
def bouncer_database(worker_id_suffix) -> str:
    """A fresh database of this module's own, migrated straight to PostgreSQL; dropped at the end."""
    need("PostgreSQL", PG_ADMIN_URL, 5432)
    if shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists():
        pytest.skip("pgbouncer is not installed (scripts/test installs it)")
    name = f"staybook_pgbouncer_{worker_id_suffix}"
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(PG_ADMIN_URL)
    migrate.upgrade(
        Settings(database_url=f"postgresql://{parsed.username or 'postgres'}@127.0.0.1:5432/{name}", environment="test")
    )
    yield name
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def pgbouncer(pool_mode: str, pool_size: int):
    """A PgBouncer in front of 127.0.0.1:5432; yields its port."""
    directory = Path(tempfile.mkdtemp(prefix="staybook-pgbouncer-"))
    directory.chmod(0o755)
    port = Ports(PORTS).free()
    config = write_pgbouncer_config(directory, port=port, backend_port=5432, pool_mode=pool_mode, pool_size=pool_size)
    log = (directory / "pgbouncer.log").open("ab")
    process = subprocess.Popen(pgbouncer_command(config), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert process.poll() is None, (directory / "pgbouncer.log").read_text()
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.mark.parametrize(
    ("pool_mode", "prepared_statements"), [("session", True), ("transaction", False)], ids=["session", "transaction"]
)
async def test_booking_through_pgbouncer(
    pool_mode, prepared_statements, bouncer_database, redis_url, redis_key_prefix, nats_url, bus_namespace,
    client_for, tmp_path,
):  # fmt: skip
    # Transaction pooling with fewer server connections than the app's pool: clients share them.
    with pgbouncer(pool_mode, pool_size=20 if pool_mode == "session" else 2) as port:
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/{bouncer_database}",
            database_prepared_statements=prepared_statements,
            database_pool_size=6,
            database_max_overflow=0,
            environment="test",
            log_json=False,
            redis_url=redis_url,
            redis_key_prefix=redis_key_prefix,
            nats_url=nats_url,
            bus_namespace=bus_namespace,
            run_worker_in_process=True,
            payments={"sandbox_instant": True},
            identity={"audit_anchor_file": str(tmp_path / "audit-anchors.jsonl")},
            catalog={"media_dir": str(tmp_path / "media")},
        )
        guest = uuid.uuid4()
        headers = bearer(settings, "guest", guest)
        async with client_for(settings) as client:
            runtime = client.app.state.runtime
            ready = await client.get("/healthz/ready")
            assert ready.status_code == 200, ready.text

            room = await seed_room_type(runtime, total=3)
            held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
            assert held.status_code == 201, held.text
            booking = held.json()
            paid = await client.post(
                f"/api/v1/bookings/{booking['id']}/payment",
                json={"payment_method": "tok_success"},
                headers=headers | key(),
            )
            assert paid.status_code == 200, paid.text
            assert paid.json()["outcome"] == "confirmed" and paid.json()["payment"]["status"] == "captured"
            assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (3, 0, 1)

            # Concurrent holds on the 2 units left, over fewer server connections than clients:
            # exactly 2 get the nights, the others are told they are gone.
            answers = await asyncio.gather(
                *(
                    client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers | key())
                    for _ in range(6)
                )
            )
            assert sorted(a.status_code for a in answers) == [201, 201, 409, 409, 409, 409], [a.text for a in answers]
            assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (3, 2, 1)

            # The relay, through PgBouncer too, publishes every event the bookings wrote.
            deadline = time.monotonic() + 30
            while True:
                async with runtime.db.session() as session:
                    unpublished = await session.scalar(
                        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
                    )
                if unpublished == 0:
                    break
                assert time.monotonic() < deadline, f"{unpublished} events never left the outbox"
                await asyncio.sleep(0.2)


async def test_transaction_pooling_needs_prepared_statements_off(bouncer_database):
    """Why the setting exists: behind transaction pooling a client's next transaction may get another
    server connection, where the statement it prepared by name on the first one does not exist."""

    async def second_server_connection(statement_cache_size: int | None) -> int:
        options = {} if statement_cache_size is None else {"statement_cache_size": statement_cache_size}
        first, second = await asyncpg.connect(url, **options), await asyncpg.connect(url, **options)
        try:
            assert await first.fetchval("SELECT $1::int + 1", 1) == 2  # prepared on server connection A
            # The other client's transaction keeps A (PgBouncer hands out the last one released).
            async with second.transaction():
                await second.execute("SELECT 1")
                return await first.fetchval("SELECT $1::int + 1", 1)  # on server connection B
        finally:
            await first.close()
            await second.close()

    with pgbouncer("transaction", pool_size=2) as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/{bouncer_database}"
        with pytest.raises(asyncpg.InvalidSQLStatementNameError):
            await second_server_connection(None)  # asyncpg's default: named, cached statements
        # Without the statement cache (what database_prepared_statements=false sets) it passes.
        assert await second_server_connection(0) == 2
