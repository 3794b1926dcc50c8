"""Backups, point-in-time restore, standbys and the DR drill, on real PostgreSQL clusters and pgBackRest.

Each test starts its own clusters (initdb, pg_ctl) on free ports in a range of its
xdist worker, and destroys them; the machine's shared PostgreSQL is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from staybook.cli import app as cli_app
from staybook.kernel.settings import BackupSettings
from staybook.recovery.drill import DrillOptions, free_port, run_drill
from staybook.recovery.pgbackrest import Repository
from staybook.recovery.postgres import LocalCluster, RecoveryError, pg_bin_dir
from tests.conftest import NATS_URL, REQUIRE_SERVICES, reachable

pytestmark = pytest.mark.integration


def _need_tools() -> None:
    missing = [tool for tool in ("pgbackrest", "runuser") if shutil.which(tool) is None]
    try:
        pg_bin_dir()
    except RecoveryError:
        missing.append("initdb")
    if missing:
        message = f"recovery tests need {', '.join(missing)} (scripts/test installs them)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def recovery_dir(worker_id_suffix) -> Path:
    """A directory the cluster owner can reach (pytest's tmp_path is private to root)."""
    _need_tools()
    base = Path(tempfile.mkdtemp(prefix="staybook-recovery-"))
    base.chmod(0o755)
    yield base
    for data_dir in base.iterdir():
        if (data_dir / "postmaster.pid").exists():
            LocalCluster(data_dir, 1).kill()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def first_port(worker_id_suffix) -> int:
    worker = int("".join(ch for ch in worker_id_suffix.split("_")[0] if ch.isdigit()) or 0)
    return 25500 + worker * 60


def _repository(base: Path, primary: LocalCluster, passphrase: str = "correct horse battery") -> Repository:
    return Repository(
        BackupSettings(
            repo_path=base / "repo",
            work_dir=base / "pgbackrest",
            pg_data_dir=primary.data_dir,
            pg_port=primary.port,
            pg_socket_dir=str(primary.sockets),
            cipher_pass=SecretStr(passphrase),
            archive_timeout_seconds=5,
        )
    )


def _primary(base: Path, port: int) -> tuple[LocalCluster, Repository]:
    primary = LocalCluster(base / "primary", free_port(port), socket_dir=base / "sockets")
    repository = _repository(base, primary)
    repository.write_config()
    primary.init(**repository.server_parameters())
    primary.start()
    repository.create_stanza()
    primary.query("CREATE TABLE bookings (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
    return primary, repository


def test_full_and_incremental_backup_restore_to_latest_and_to_a_point_in_time(recovery_dir, first_port):
    primary, repository = _primary(recovery_dir, first_port)
    primary.query("INSERT INTO bookings SELECT generate_series(1, 500)")
    repository.backup("full")
    primary.query("INSERT INTO bookings SELECT generate_series(501, 600)")
    repository.backup("incr")
    time.sleep(1.1)  # pgBackRest compares target times to backup stop times in whole seconds
    primary.query("INSERT INTO bookings SELECT generate_series(601, 700)")
    between = datetime.now(UTC)
    time.sleep(0.5)
    primary.query("INSERT INTO bookings SELECT generate_series(701, 800)")
    primary.query("SELECT pg_switch_wal()")
    repository.check()  # waits until the switched segment is archived
    assert [b["type"] for b in repository.backups()] == ["full", "incr"]
    repository.verify()
    primary.kill()

    latest = LocalCluster(recovery_dir / "latest", free_port(primary.port + 1), socket_dir=primary.sockets)
    repository.restore(latest.data_dir, port=latest.port)
    latest.start()
    latest.wait_until_primary()
    assert latest.query("SELECT count(*), max(n) FROM bookings") == [(800, 800)]
    latest.stop()

    earlier = LocalCluster(recovery_dir / "earlier", free_port(latest.port + 1), socket_dir=primary.sockets)
    repository.restore(earlier.data_dir, port=earlier.port, target_time=between)
    earlier.start()
    earlier.wait_until_primary()
    assert earlier.query("SELECT count(*), max(n) FROM bookings") == [(700, 700)]
    earlier.stop()


def test_backups_are_encrypted_and_restoring_needs_the_passphrase(recovery_dir, first_port):
    primary, repository = _primary(recovery_dir, first_port)
    marker = f"guest-{uuid.uuid4().hex}"
    primary.query(f"CREATE TABLE notes AS SELECT '{marker}'::text AS note FROM generate_series(1, 1000)")
    repository.backup("full")
    stored = b"".join(p.read_bytes() for p in (recovery_dir / "repo").rglob("*") if p.is_file())
    assert marker.encode() not in stored
    primary.stop()

    wrong = _repository(recovery_dir, primary, passphrase="not the passphrase")
    wrong.settings.work_dir = recovery_dir / "pgbackrest-wrong"
    wrong.write_config()
    target = LocalCluster(recovery_dir / "target", free_port(primary.port + 1), socket_dir=primary.sockets)
    with pytest.raises(RecoveryError):
        wrong.restore(target.data_dir, port=target.port)


def test_restore_refuses_to_overwrite_a_running_primary_without_force(recovery_dir, first_port, monkeypatch):
    primary, repository = _primary(recovery_dir, first_port)
    repository.backup("full")
    primary.query("INSERT INTO bookings VALUES (1)")
    for name, value in {
        "STAYBOOK_BACKUP__REPO_PATH": str(recovery_dir / "repo"),
        "STAYBOOK_BACKUP__WORK_DIR": str(recovery_dir / "pgbackrest"),
        "STAYBOOK_BACKUP__PG_DATA_DIR": str(primary.data_dir),
        "STAYBOOK_BACKUP__PG_PORT": str(primary.port),
        "STAYBOOK_BACKUP__PG_SOCKET_DIR": str(primary.sockets),
        "STAYBOOK_BACKUP__CIPHER_PASS": "correct horse battery",
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    refused = runner.invoke(cli_app, ["restore", "--target-latest"])
    assert refused.exit_code == 1
    assert "refusing to restore over the PostgreSQL running" in refused.output
    assert primary.running
    assert primary.query("SELECT count(*) FROM bookings") == [(1,)]

    forced = runner.invoke(cli_app, ["restore", "--target-latest", "--force"])
    assert forced.exit_code == 0, forced.output
    primary.start()
    primary.wait_until_primary()
    assert primary.query("SELECT count(*) FROM bookings") == [(1,)]


def test_streaming_standby_follows_the_primary_reports_its_lag_and_takes_over(recovery_dir, first_port):
    primary, _ = _primary(recovery_dir, first_port)
    standby = primary.make_standby(recovery_dir / "standby", free_port(primary.port + 1), synchronous=True)
    assert primary.query("SELECT application_name, sync_state FROM pg_stat_replication") == [("standby1", "sync")]
    primary.query("INSERT INTO bookings SELECT generate_series(1, 50)")
    # Synchronous: the commit returned only once the standby had flushed it; replay follows at once.
    deadline = time.monotonic() + 30
    while standby.query("SELECT count(*) FROM bookings") != [(50,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standby.query("SELECT count(*) FROM bookings") == [(50,)]
    assert standby.in_recovery()
    lag = standby.replication_lag_seconds()
    assert lag is not None and lag >= 0

    primary.kill()
    standby.promote()
    standby.wait_until_primary()
    standby.query("INSERT INTO bookings VALUES (51)")
    assert standby.query("SELECT count(*) FROM bookings") == [(51,)]


@pytest.mark.e2e
async def test_drill_kills_the_primary_under_load_and_the_promoted_standby_keeps_every_invariant(
    recovery_dir, first_port
):
    """A small async-standby drill end to end: API processes, real load, kill -9, promotion."""
    if REQUIRE_SERVICES or reachable(NATS_URL, 4222):
        nats_url = NATS_URL
    else:
        nats_url = None
    result = await run_drill(
        DrillOptions(
            mode="async_standby",
            bookings=300,
            base_dir=recovery_dir / "drill",
            first_port=first_port + 20,
            rate_per_s=6,
            kill_after_s=(4.0, 6.0),
            nats_url=nats_url,
            seed=int(os.environ.get("STAYBOOK_DRILL_SEED", "7")),
        ),
        progress=lambda line: None,
    )
    assert result.invariants_ok, result.invariants
    assert result.bookings_loaded == 300
    assert result.confirmed_before_kill > 0
    assert result.confirmed_after_recovery > 0
    assert result.rto_seconds is not None


def test_republish_sends_again_what_a_lost_stream_carried(pg_settings, monkeypatch):
    """After a stream loss, `staybook dr republish --since` puts published events back in the relay's queue."""
    import psycopg

    url = pg_settings.sync_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        for minutes_ago in (30, 10, 1):
            conn.execute(
                "INSERT INTO outbox (id, subject, event_type, payload, headers, created_at, published_at, attempts) "
                "VALUES (gen_random_uuid(), 'staybook.booking.booking.confirmed', 'booking.confirmed', '{}', '{}', "
                "now() - make_interval(mins => %s), now() - make_interval(mins => %s), 0)",
                (minutes_ago, minutes_ago),
            )
        since = conn.execute("SELECT (now() - interval '15 minutes')::text").fetchone()[0]
    monkeypatch.setenv("STAYBOOK_DATABASE_URL", pg_settings.database_url)
    answer = CliRunner().invoke(cli_app, ["dr", "republish", "--since", since.replace(" ", "T")])
    assert answer.exit_code == 0, answer.output
    assert "2 events will be published again" in answer.output
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0] == 2
