"""Encrypted, de-duplicated snapshots of the local photo store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from staybook.recovery import photos
from staybook.recovery.postgres import RecoveryError


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_snapshots_are_encrypted_link_unchanged_files_and_restore_exactly(tmp_path):
    media, snapshots = tmp_path / "media", tmp_path / "snapshots"
    _write(media / "photos" / "p1" / "a.webp", b"GUEST-VISIBLE-PIXELS-A" * 100)
    _write(media / "originals" / "p1" / "a.jpg", b"ORIGINAL-WITH-SECRETS" * 100)
    first = photos.snapshot(media, snapshots, "passphrase", label="20270101T000000Z")
    assert first == {"label": "20270101T000000Z", "files": 2, "stored": 2, "linked": 0}
    stored = b"".join(p.read_bytes() for p in snapshots.rglob("*.enc"))
    assert b"ORIGINAL-WITH-SECRETS" not in stored and b"GUEST-VISIBLE-PIXELS-A" not in stored

    _write(media / "photos" / "p1" / "b.webp", b"NEW")
    second = photos.snapshot(media, snapshots, "passphrase", label="20270102T000000Z")
    assert (second["stored"], second["linked"]) == (1, 2)
    linked = snapshots / "20270102T000000Z" / "files" / "photos" / "p1" / "a.webp.enc"
    assert os.stat(linked).st_nlink == 2

    restored = tmp_path / "restored"
    assert photos.restore(snapshots, "20270102T000000Z", restored, "passphrase") == 3
    for path in media.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(media)).read_bytes() == path.read_bytes()


def test_restoring_needs_the_passphrase_and_an_empty_target(tmp_path):
    media, snapshots = tmp_path / "media", tmp_path / "snapshots"
    _write(media / "a.webp", b"pixels")
    label = photos.snapshot(media, snapshots, "right")["label"]
    with pytest.raises(RecoveryError, match="wrong passphrase"):
        photos.restore(snapshots, label, tmp_path / "out", "wrong")
    _write(tmp_path / "busy" / "x", b"")
    with pytest.raises(RecoveryError, match="not empty"):
        photos.restore(snapshots, label, tmp_path / "busy", "right")


def test_expiry_keeps_the_retention_window_and_always_the_newest(tmp_path):
    media, snapshots = tmp_path / "media", tmp_path / "snapshots"
    _write(media / "a.webp", b"pixels")
    now = datetime(2027, 3, 1, tzinfo=UTC)
    for days_ago in (60, 40, 10):
        label = (now - timedelta(days=days_ago)).strftime("%Y%m%dT%H%M%SZ")
        photos.snapshot(media, snapshots, "p", label=label)
    assert photos.expire(snapshots, keep_days=35, now=now) == ["20261231T000000Z", "20270120T000000Z"]
    assert photos.labels(snapshots) == ["20270219T000000Z"]
