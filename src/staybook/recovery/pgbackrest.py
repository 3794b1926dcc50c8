"""pgBackRest, driven for staybook: continuous WAL archiving, full/diff/incr backups, verify, PITR.

`staybook backup` and `staybook restore` are thin commands over `Repository`. Its
configuration file is generated from `BackupSettings` (one stanza, one repository,
encrypted with `cipher_pass`, full backups kept `retention_full_days` days) and
written with mode 0600, because it holds the passphrase.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from staybook.kernel.settings import BackupSettings
from staybook.recovery.postgres import RecoveryError, append_settings, as_owner, give_to_owner

BACKUP_TYPES = ("full", "diff", "incr")


def pgbackrest_binary() -> str:
    binary = shutil.which("pgbackrest")
    if binary is None:
        raise RecoveryError("pgbackrest not found: install the Debian package pgbackrest")
    return binary


@dataclass
class Repository:
    """One pgBackRest stanza: the primary cluster it archives and the repository it writes."""

    settings: BackupSettings

    @property
    def work_dir(self) -> Path:
        return self.settings.work_dir.resolve()

    @property
    def config_file(self) -> Path:
        return self.work_dir / "pgbackrest.conf"

    @property
    def pg_data_dir(self) -> Path:
        if self.settings.pg_data_dir is None:
            raise RecoveryError("backup.pg_data_dir is not set (STAYBOOK_BACKUP__PG_DATA_DIR)")
        return self.settings.pg_data_dir.resolve()

    def archive_command(self) -> str:
        """What postgresql.conf's archive_command must be for this repository."""
        return f"{pgbackrest_binary()} --config={self.config_file} --stanza={self.settings.stanza} archive-push %p"

    def server_parameters(self) -> dict[str, str | int]:
        """The primary's settings for continuous archiving (archive_mode needs a restart)."""
        return {
            "archive_mode": "on",
            "archive_command": self.archive_command(),
            "archive_timeout": self.settings.archive_timeout_seconds,
            "wal_level": "replica",
        }

    # ---------------------------------------------------------------- configuration

    def write_config(self) -> Path:
        settings = self.settings
        owner = settings.pg_owner
        give_to_owner(self.work_dir, owner)
        for sub in ("lock", "log", "spool"):
            give_to_owner(self.work_dir / sub, owner)
        lines = [
            "[global]",
            f"lock-path={self.work_dir / 'lock'}",
            f"log-path={self.work_dir / 'log'}",
            f"spool-path={self.work_dir / 'spool'}",
            "log-level-file=detail",
            "log-level-console=info",
            "start-fast=y",
            "process-max=2",
            "compress-type=zst",
            "repo1-retention-full-type=time",
            f"repo1-retention-full={settings.retention_full_days}",
        ]
        if settings.cipher_pass is not None:
            lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={settings.cipher_pass.get_secret_value()}"]
        if settings.repo_type == "posix":
            repo_path = settings.repo_path.resolve()
            give_to_owner(repo_path, owner)
            lines += ["repo1-type=posix", f"repo1-path={repo_path}"]
        else:
            if not (settings.s3_endpoint and settings.s3_bucket and settings.s3_key and settings.s3_key_secret):
                raise RecoveryError("an s3 repository needs backup.s3_endpoint, s3_bucket, s3_key and s3_key_secret")
            lines += [
                "repo1-type=s3",
                "repo1-path=/staybook",
                f"repo1-s3-endpoint={settings.s3_endpoint}",
                f"repo1-storage-port={settings.s3_port}",
                f"repo1-s3-bucket={settings.s3_bucket}",
                f"repo1-s3-region={settings.s3_region}",
                f"repo1-s3-key={settings.s3_key.get_secret_value()}",
                f"repo1-s3-key-secret={settings.s3_key_secret.get_secret_value()}",
                "repo1-s3-uri-style=path",
                f"repo1-storage-verify-tls={'y' if settings.s3_verify_tls else 'n'}",
            ]
        lines += [
            "",
            f"[{settings.stanza}]",
            f"pg1-path={self.pg_data_dir}",
            f"pg1-port={settings.pg_port}",
            f"pg1-socket-path={settings.pg_socket_dir}",
            f"pg1-user={owner}",
            "",
        ]
        self.config_file.write_text("\n".join(lines))
        self.config_file.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(self.config_file, owner, owner)
        return self.config_file

    # ---------------------------------------------------------------- commands

    def _command(self, command: str, *options: str) -> list[str]:
        binary = pgbackrest_binary()
        stanza = self.settings.stanza
        return as_owner([binary, f"--config={self.config_file}", f"--stanza={stanza}", *options, command],
                        self.settings.pg_owner)  # fmt: skip

    def run(self, command: str, *options: str, progress: Callable[[str], None] | None = None) -> str:
        """Runs one pgBackRest command; each console line goes to `progress` as it comes."""
        process = subprocess.Popen(  # noqa: S603
            self._command(command, *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        output: list[str] = []
        assert process.stdout is not None
        for line in _lines(process.stdout):
            output.append(line)
            if progress is not None:
                progress(line)
        if process.wait() != 0:
            errors = [line for line in output if "ERROR" in line] or output[-1:] or [f"exit {process.returncode}"]
            raise RecoveryError(f"pgbackrest {command} failed: {errors[-1].strip()}")
        return "".join(output)

    def create_stanza(self, progress=None) -> None:
        self.run("stanza-create", progress=progress)

    def check(self, progress=None) -> None:
        """Checks the archive_command works end to end (pgBackRest forces a WAL switch and waits)."""
        self.run("check", progress=progress)

    def backup(self, kind: str = "full", progress=None) -> None:
        if kind not in BACKUP_TYPES:
            raise RecoveryError(f"backup type must be one of {', '.join(BACKUP_TYPES)}")
        self.run("backup", f"--type={kind}", progress=progress)

    def verify(self, progress=None) -> None:
        self.run("verify", progress=progress)

    def info(self) -> list[dict]:
        return json.loads(self.run("info", "--output=json"))

    def backups(self) -> list[dict]:
        """The stanza's backups, oldest first: label, type, start and stop time."""
        stanzas = self.info()
        found = []
        for stanza in stanzas:
            for backup in stanza.get("backup", []):
                found.append(
                    {
                        "label": backup["label"],
                        "type": backup["type"],
                        "start": datetime.fromtimestamp(backup["timestamp"]["start"]).astimezone().isoformat(),
                        "stop": datetime.fromtimestamp(backup["timestamp"]["stop"]).astimezone().isoformat(),
                        "size_bytes": backup.get("info", {}).get("size"),
                    }
                )
        return found

    def restore(
        self,
        data_dir: Path,
        *,
        target_time: datetime | None = None,
        port: int | None = None,
        progress=None,
    ) -> None:
        """Restores into `data_dir` (emptied), to `target_time` or to the end of the archived WAL.

        The restored cluster promotes itself when recovery reaches the target. `port`
        rewrites its port, so that a restore can sit beside the cluster it replaces.
        """
        owner = self.settings.pg_owner
        if data_dir.exists():
            shutil.rmtree(data_dir)
        give_to_owner(data_dir, owner)
        options = [f"--pg1-path={data_dir.resolve()}"]
        if target_time is not None:
            options += ["--type=time", f"--target={target_time.isoformat(sep=' ')}", "--target-action=promote"]
        self.run("restore", *options, progress=progress)
        if port is not None:
            append_settings(data_dir, port=port)


def _lines(stream) -> Iterator[str]:
    yield from iter(stream.readline, "")
