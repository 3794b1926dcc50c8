"""The signal archive on a local directory and on an S3-compatible store (moto's server): day
partitions, whole files only, and erasure that rewrites just the files holding the user's rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from staybook.personalization.archive import SignalArchive
from staybook.personalization.signals import SignalBatch, SignalRecord, epoch_ms

NOW = datetime.now(UTC)


def batch(user: uuid.UUID, days_ago: int, count: int = 3) -> SignalBatch:
    at = epoch_ms(NOW - timedelta(days=days_ago))
    return SignalBatch(
        uuid.uuid4(), at, user, None, [SignalRecord("view", at + i, uuid.uuid4(), price=9000) for i in range(count)]
    )


@pytest.fixture(params=["local", "s3"])
def archive(request, tmp_path) -> SignalArchive:
    if request.param == "local":
        return SignalArchive(str(tmp_path / "signals"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"signals-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    ).create_bucket(Bucket=bucket)
    host = endpoint.removeprefix("http://")
    return SignalArchive(f"s3://k:s@{bucket}/signals?endpoint_override={host}&scheme=http&region=us-east-1")


def test_days_partition_and_erasure_rewrites_only_the_users_rows(archive):
    ana, bo = uuid.uuid4(), uuid.uuid4()
    assert archive.write([batch(ana, 0), batch(bo, 0), batch(ana, 2)]) == 9
    assert archive.write([batch(bo, 2, count=2)]) == 2
    days = {path.split("/day=")[1][:10] for path in archive.files()}
    assert days == {(NOW - timedelta(days=d)).date().isoformat() for d in (0, 2)}
    assert archive.read().num_rows == 11
    assert archive.read(since_day=NOW.date().isoformat()).num_rows == 6

    assert archive.erase_user(ana) == 6
    users = set(archive.read()["user_id"].to_pylist())
    assert users == {bo.hex}
    assert archive.read().num_rows == 5
    assert archive.erase_user(ana) == 0
