"""`staybook backup` and `staybook restore` with an S3 repository: pgBackRest against moto's server
(HTTPS with its own certificate, which pgBackRest requires), a bucket made with boto3, a cluster of
the test's own. Backup, verify, lose the primary, restore to the end of the archived WAL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from staybook.cli import app as cli_app
from staybook.kernel.settings import Settings
from staybook.recovery.drill import free_port
from staybook.recovery.pgbackrest import Repository
from staybook.recovery.postgres import LocalCluster
from tests.integration.test_recovery import recovery_dir  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.integration,
    # The test's client talks to the same self-signed server pgBackRest does.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

KEY, SECRET = "staybook-backup", "staybook-backup-secret"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (pgBackRest speaks only HTTPS to S3)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "s3.crt", directory / "s3.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def s3_https(worker_id_suffix, tmp_path):
    """moto's S3 over HTTPS on a free port of this worker's range, served by uvicorn (whose TLS ends
    each connection with a close_notify, which pgBackRest's OpenSSL insists on); stopped by its pid."""
    worker = int("".join(ch for ch in worker_id_suffix.split("_")[0] if ch.isdigit()) or 0)
    port = free_port(55150 + worker * 5)
    cert_file, key_file = _self_signed(tmp_path)
    command = [
        sys.executable, "-m", "uvicorn", "--interface", "wsgi", "--factory", f"{__name__}:moto_app",
        "--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file),
        "--log-level", "warning", "--timeout-graceful-shutdown", "2",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert server.poll() is None and time.monotonic() < deadline, "the S3 server did not start"
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def moto_app():
    """moto's server application (what `moto_server` runs), for uvicorn."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)


def _bucket(port: int):
    import boto3

    client = boto3.client(
        "s3", endpoint_url=f"https://127.0.0.1:{port}", region_name="us-east-1", verify=False,
        aws_access_key_id=KEY, aws_secret_access_key=SECRET,
    )  # fmt: skip
    name = f"staybook-backups-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return client, name


def test_backup_to_s3_and_restore_from_it(recovery_dir, s3_https, monkeypatch):  # noqa: F811 - fixture
    client, bucket = _bucket(s3_https)
    primary = LocalCluster(recovery_dir / "primary", free_port(55100), socket_dir=recovery_dir / "sockets")
    for name, value in {
        "STAYBOOK_BACKUP__REPO_TYPE": "s3",
        "STAYBOOK_BACKUP__S3_ENDPOINT": "127.0.0.1",
        "STAYBOOK_BACKUP__S3_PORT": str(s3_https),
        "STAYBOOK_BACKUP__S3_BUCKET": bucket,
        "STAYBOOK_BACKUP__S3_REGION": "us-east-1",
        "STAYBOOK_BACKUP__S3_KEY": KEY,
        "STAYBOOK_BACKUP__S3_KEY_SECRET": SECRET,
        "STAYBOOK_BACKUP__S3_VERIFY_TLS": "false",  # moto's certificate is its own
        "STAYBOOK_BACKUP__WORK_DIR": str(recovery_dir / "pgbackrest"),
        "STAYBOOK_BACKUP__PG_DATA_DIR": str(primary.data_dir),
        "STAYBOOK_BACKUP__PG_PORT": str(primary.port),
        "STAYBOOK_BACKUP__PG_SOCKET_DIR": str(primary.sockets),
        "STAYBOOK_BACKUP__CIPHER_PASS": "correct horse battery",
        "STAYBOOK_BACKUP__ARCHIVE_TIMEOUT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    repository = Repository(Settings().backup)
    repository.write_config()
    primary.init(**repository.server_parameters())
    primary.start()
    runner = CliRunner()

    def staybook(*args: str) -> str:
        answer = runner.invoke(cli_app, list(args))
        assert answer.exit_code == 0, answer.output
        return answer.output

    staybook("backup", "init")
    marker = f"guest-{uuid.uuid4().hex}"
    primary.query(f"CREATE TABLE notes AS SELECT n, '{marker}'::text AS note FROM generate_series(1, 500) n")
    staybook("backup", "--type", "full")
    primary.query(f"INSERT INTO notes SELECT n, '{marker}' FROM generate_series(501, 600) n")
    primary.query("SELECT pg_switch_wal()")
    repository.check()  # waits until the switched segment is archived to the bucket
    staybook("backup", "verify")

    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]  # fmt: skip
    assert any("/backup/" in key for key in keys) and any("/archive/" in key for key in keys)
    stored = b"".join(client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys)
    assert marker.encode() not in stored  # encrypted before it left the host
    primary.kill()

    restored = LocalCluster(recovery_dir / "restored", free_port(primary.port + 1), socket_dir=primary.sockets)
    staybook("restore", "--target-latest", "--data-dir", str(restored.data_dir), "--port", str(restored.port))
    restored.start()
    restored.wait_until_primary()
    assert restored.query("SELECT count(*), max(n), min(note) FROM notes") == [(600, 600, marker)]
    restored.stop()
