"""A PostgreSQL cluster on this machine: initdb, start, stop, kill -9, promote, and streaming standbys.

Used by the DR drill, the recovery tests and `staybook dr standby|promote`. The
server refuses to run as root, so when this process is root every server command
runs as the cluster's owner (`postgres` by default) through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from staybook.processes import children_of

DEFAULT_OWNER = "postgres"


def pg_bin_dir() -> Path:
    """The directory of initdb/pg_ctl: $STAYBOOK_PG_BIN_DIR, else the newest Debian install, else PATH."""
    configured = os.environ.get("STAYBOOK_PG_BIN_DIR")
    if configured:
        return Path(configured)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    if debian:
        return debian[0]
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RecoveryError("PostgreSQL server binaries not found: install postgresql or set STAYBOOK_PG_BIN_DIR")
    return Path(initdb).parent


class RecoveryError(RuntimeError):
    """A recovery step failed; the message says which and why, in one line."""


def as_owner(command: list[str], owner: str = DEFAULT_OWNER) -> list[str]:
    """`command`, run as the cluster owner when this process is root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", owner, "--", *command]
    return command


def run(command: list[str], *, owner: str = DEFAULT_OWNER, check: bool = True, timeout: float | None = 600):
    result = subprocess.run(as_owner(command, owner), capture_output=True, text=True, timeout=timeout)  # noqa: S603
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RecoveryError(f"{Path(command[0]).name} failed: {detail[-1] if detail else result.returncode}")
    return result


def give_to_owner(path: Path, owner: str = DEFAULT_OWNER) -> None:
    """Creates `path` (mode 0700) owned by the cluster owner when this process is root."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(path, owner, owner)


@dataclass
class LocalCluster:
    """One PostgreSQL cluster: a data directory and a port on 127.0.0.1, trust authentication."""

    data_dir: Path
    port: int
    owner: str = DEFAULT_OWNER
    # Where the server puts its Unix socket; default the data directory.
    socket_dir: Path | None = None
    bin_dir: Path = field(default_factory=pg_bin_dir)

    @property
    def sockets(self) -> Path:
        return self.socket_dir or self.data_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.owner}@127.0.0.1:{self.port}/{database}"

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    # ---------------------------------------------------------------- lifecycle

    def init(self, **parameters: str | int) -> None:
        """initdb (checksums on), then the settings every staybook cluster needs plus `parameters`."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        give_to_owner(self.data_dir, self.owner)
        give_to_owner(self.sockets, self.owner)
        run(
            [self._tool("initdb"), "-D", str(self.data_dir), "-U", self.owner, "-A", "trust", "--data-checksums",
             "-E", "UTF8", "--locale=C.UTF-8"],
            owner=self.owner,
        )  # fmt: skip
        defaults: dict[str, str | int] = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.sockets),
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "hot_standby": "on",
            "fsync": "on",
        }
        self.configure(**{**defaults, **parameters})
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def configure(self, **parameters: str | int) -> None:
        append_settings(self.data_dir, **parameters)

    def start(self, timeout: float = 120) -> None:
        self.log_file.touch()
        if os.geteuid() == 0:
            shutil.chown(self.log_file, self.owner, self.owner)
        run(
            [self._tool("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(timeout)),
             "start"],
            owner=self.owner,
            timeout=timeout + 30,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            run([self._tool("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"], owner=self.owner)

    def kill(self) -> None:
        """SIGKILL to the postmaster, as a crashed machine would: its backends die with it."""
        pid = self.pid
        if pid is None:
            return
        # The whole server at once, as a crashed machine loses it: postmaster and backends.
        for victim in [pid, *children_of(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def promote(self, timeout: float = 60) -> None:
        run([self._tool("pg_ctl"), "-D", str(self.data_dir), "-w", "-t", str(int(timeout)), "promote"],
            owner=self.owner)  # fmt: skip

    def destroy(self) -> None:
        """Kills the server if it runs and deletes the data directory."""
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # ---------------------------------------------------------------- SQL

    def connect(self, database: str = "postgres", **kwargs):
        """A psycopg connection (autocommit): operator tools speak to the server synchronously."""
        try:
            import psycopg
        except ModuleNotFoundError as error:
            raise RecoveryError("the recovery commands need psycopg: pip install 'staybook[recovery]'") from error
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5, **kwargs)

    def query(self, sql: str, params=None, database: str = "postgres") -> list[tuple]:
        with self.connect(database) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def in_recovery(self) -> bool:
        return bool(self.query("SELECT pg_is_in_recovery()")[0][0])

    def wait_until_primary(self, timeout: float = 3600) -> None:
        """Waits while the server replays WAL (a restore), until it has promoted itself."""
        deadline = time.monotonic() + timeout
        while self.in_recovery():
            if time.monotonic() > deadline:
                raise RecoveryError(f"still in recovery after {timeout:.0f} s")
            time.sleep(0.1)

    # ---------------------------------------------------------------- replicas

    def make_standby(self, data_dir: Path, port: int, *, name: str = "standby1", synchronous: bool = False):
        """A streaming hot standby of this cluster (pg_basebackup -R, its own slot), started.

        `synchronous=True` makes this primary wait for the standby's flush on every commit
        (synchronous_commit = on): a committed booking is on two machines, RPO 0.
        """
        self.query(
            "SELECT pg_create_physical_replication_slot(%s) "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
            (name, name),
        )
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        give_to_owner(data_dir, self.owner)
        run(
            [self._tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.owner,
             "-D", str(data_dir), "-X", "stream", "-S", name, "-R", "-c", "fast",
             "-d", f"host=127.0.0.1 port={self.port} user={self.owner} application_name={name}"],
            owner=self.owner,
        )  # fmt: skip
        standby = LocalCluster(data_dir, port, owner=self.owner, socket_dir=self.socket_dir, bin_dir=self.bin_dir)
        # The standby does not archive: only the primary writes to the backup repository.
        standby.configure(port=port, unix_socket_directories=str(standby.sockets), archive_mode="off")
        standby.start()
        if synchronous:
            self.set_synchronous_standby(name)
        return standby

    def set_synchronous_standby(self, name: str | None) -> None:
        with self.connect() as conn:
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{name or ''}'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            conn.execute("SELECT pg_reload_conf()")
        if name:
            # The reload is asynchronous: wait until the primary treats the standby as synchronous.
            deadline = time.monotonic() + 30
            query = "SELECT 1 FROM pg_stat_replication WHERE application_name = %s AND sync_state = 'sync'"
            while not self.query(query, (name,)):
                if time.monotonic() > deadline:
                    raise RecoveryError(f"standby {name} did not become synchronous")
                time.sleep(0.05)

    def replication_lag_seconds(self) -> float | None:
        """On a standby: seconds since the last replayed transaction's commit (0 when caught up)."""
        rows = self.query(
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
            "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
        )
        value = rows[0][0] if rows else None
        return None if value is None else float(value)


def append_settings(data_dir: Path, **parameters: str | int) -> None:
    """Appends settings to a cluster's postgresql.conf (a later line wins); a restart or reload applies them."""
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{name} = {_quote(value)}\n" for name, value in parameters.items())


def _quote(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False
