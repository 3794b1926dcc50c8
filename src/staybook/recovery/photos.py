"""Snapshots of the local photo store, encrypted, taken beside each database backup.

A deployment on S3 keeps photos in a versioned bucket (deploy/terraform), so a point
in time is a bucket version. A deployment on a local directory gets snapshots here:
every file is encrypted with AES-256-GCM under a key derived from the backup
passphrase, and a file unchanged since the previous snapshot (same path, size and
modification time) is hard-linked to it instead of stored again, so a daily snapshot
costs what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from staybook.recovery.postgres import RecoveryError

MANIFEST = "manifest.json"
_SALT = b"staybook-photo-snapshots-v1"


def _key(passphrase: str) -> bytes:
    return hashlib.scrypt(passphrase.encode(), salt=_SALT, n=2**14, r=8, p=1, dklen=32)


def snapshot(media_dir: Path, snapshots_dir: Path, passphrase: str, *, label: str | None = None) -> dict:
    """Takes a snapshot of `media_dir`; returns its label and how many files were stored or linked."""
    if not media_dir.is_dir():
        raise RecoveryError(f"no photo directory at {media_dir}")
    label = label or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = snapshots_dir / label
    if target.exists():
        raise RecoveryError(f"a photo snapshot {label} exists already")
    previous = _latest(snapshots_dir)
    previous_manifest = json.loads((previous / MANIFEST).read_text()) if previous else {}
    aead = AESGCM(_key(passphrase))
    manifest: dict[str, dict] = {}
    stored = linked = 0
    for source in sorted(p for p in media_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = source.relative_to(media_dir).as_posix()
        stat = source.stat()
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        destination = target / "files" / (relative + ".enc")
        destination.parent.mkdir(parents=True, exist_ok=True)
        earlier = previous_manifest.get(relative)
        if previous is not None and earlier is not None and all(earlier[k] == entry[k] for k in entry):
            os.link(previous / "files" / (relative + ".enc"), destination)
            linked += 1
        else:
            nonce = os.urandom(12)
            destination.write_bytes(nonce + aead.encrypt(nonce, source.read_bytes(), relative.encode()))
            stored += 1
        manifest[relative] = entry
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return {"label": label, "files": len(manifest), "stored": stored, "linked": linked}


def restore(snapshots_dir: Path, label: str, into: Path, passphrase: str) -> int:
    """Writes the snapshot's photos into `into` (which must be empty or absent); returns the file count."""
    source = snapshots_dir / label
    if not (source / MANIFEST).is_file():
        raise RecoveryError(f"no photo snapshot {label} in {snapshots_dir}")
    if into.exists() and any(into.iterdir()):
        raise RecoveryError(f"{into} is not empty")
    aead = AESGCM(_key(passphrase))
    manifest = json.loads((source / MANIFEST).read_text())
    for relative, entry in manifest.items():
        destination = (into / relative).resolve()
        if not destination.is_relative_to(into.resolve()):
            raise RecoveryError(f"snapshot {label} names a path outside the photo directory: {relative}")
        blob = (source / "files" / (relative + ".enc")).read_bytes()
        try:
            data = aead.decrypt(blob[:12], blob[12:], relative.encode())
        except Exception as error:
            raise RecoveryError(f"cannot decrypt {relative}: wrong passphrase or damaged snapshot") from error
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
        os.utime(destination, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    return len(manifest)


def labels(snapshots_dir: Path) -> list[str]:
    if not snapshots_dir.is_dir():
        return []
    return sorted(p.name for p in snapshots_dir.iterdir() if (p / MANIFEST).is_file())


def expire(snapshots_dir: Path, keep_days: int, now: datetime | None = None) -> list[str]:
    """Deletes snapshots older than `keep_days` (the backup retention); keeps the newest always."""
    now = now or datetime.now(UTC)
    existing = labels(snapshots_dir)
    removed = []
    for label in existing[:-1]:
        taken = datetime.strptime(label[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if (now - taken).days > keep_days:
            shutil.rmtree(snapshots_dir / label)
            removed.append(label)
    return removed


def _latest(snapshots_dir: Path) -> Path | None:
    existing = labels(snapshots_dir)
    return snapshots_dir / existing[-1] if existing else None
