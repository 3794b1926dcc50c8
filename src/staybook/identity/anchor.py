"""Anchors of the audit chain: signed heads kept outside the database, so truncation shows.

The hash chain shows an entry edited or removed in the middle, but not the newest entries
removed: what is left is still a valid chain. So a worker job signs the chain's head (its last
sequence number and entry hash) with an HMAC key the database does not hold, appends it to an
append-only file on storage the database user cannot write (`Settings.audit_anchor_file`), and
announces it as `audit.anchored` for anyone who keeps a copy elsewhere. Verification compares the
chain with the newest anchor: a chain that ends before the anchored entry, or holds another hash
there, was tampered with. Entries added after the newest anchor are as safe as the interval between
anchors allows (`identity.audit_anchor_interval_seconds`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import orjson
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from staybook.identity.events import AuditAnchored
from staybook.identity.models import AuditEntry
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings

log = structlog.get_logger("staybook.identity.audit")

# The last bytes of the file read to find the newest anchor (one line is ~250 bytes).
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Anchor:
    seq: int
    entry_hash: str
    at: str
    signature: str


class AnchorSigner:
    """Signs and checks anchors with `identity.audit_anchor_key` (default: derived from secret_key)."""

    def __init__(self, settings: Settings) -> None:
        configured = settings.identity.audit_anchor_key
        if configured is not None:
            self.key = configured.get_secret_value().encode()
        else:
            self.key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=b"staybook-identity", info=b"audit-anchor-key"
            ).derive(settings.secret_key.get_secret_value().encode())

    def _mac(self, seq: int, entry_hash: str, at: str) -> str:
        message = f"staybook-audit-anchor/v1|{seq}|{entry_hash}|{at}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def sign(self, seq: int, entry_hash: str, at: datetime) -> Anchor:
        stamp = at.isoformat(timespec="microseconds")
        return Anchor(seq, entry_hash, stamp, self._mac(seq, entry_hash, stamp))

    def genuine(self, anchor: Anchor) -> bool:
        return hmac.compare_digest(anchor.signature, self._mac(anchor.seq, anchor.entry_hash, anchor.at))


class AnchorFile:
    """Append-only JSON lines; the newest anchor is the last line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, anchor: Anchor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            file.write(orjson.dumps(asdict(anchor)) + b"\n")
            file.flush()
            os.fsync(file.fileno())

    def latest(self) -> Anchor | None:
        """The last anchor written; ValueError when the last line is not an anchor at all."""
        try:
            with open(self.path, "rb") as file:
                file.seek(0, os.SEEK_END)
                file.seek(max(0, file.tell() - _TAIL_BYTES))
                lines = file.read().splitlines()
        except FileNotFoundError:
            return None
        lines = [line for line in lines if line.strip()]
        if not lines:
            return None
        try:
            return Anchor(**orjson.loads(lines[-1]))
        except (orjson.JSONDecodeError, TypeError) as error:
            raise ValueError("the last line of the audit anchor file is not an anchor") from error


def anchor_file(runtime: Runtime) -> AnchorFile:
    return AnchorFile(runtime.settings.audit_anchor_file)


async def _head(session) -> tuple[int, str] | None:
    row = (
        await session.execute(select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1))
    ).first()
    return (row[0], row[1]) if row else None


async def anchor_chain(runtime: Runtime) -> Anchor | None:
    """Signs the chain's current head and keeps it (file, then `audit.anchored`); None when there is
    nothing new. Refuses to anchor a chain that no longer holds the previous anchor's entry: that
    would bless the tampering, so the old anchor stays the newest and verification keeps failing."""
    signer, store = AnchorSigner(runtime.settings), anchor_file(runtime)
    previous = store.latest()
    async with runtime.db.unit_of_work() as uow:
        head = await _head(uow.session)
        if head is None:
            return None
        if previous is not None:
            if (previous.seq, previous.entry_hash) == head:
                return None
            anchored = await uow.session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == previous.seq))
            if head[0] < previous.seq or anchored != previous.entry_hash:
                log.error(
                    "audit chain does not hold its last anchor; not anchoring",
                    context={"anchored_seq": previous.seq, "head_seq": head[0]},
                )
                return None
        anchor = signer.sign(head[0], head[1], utcnow())
        # fsync can take milliseconds: not on the event loop.
        await asyncio.to_thread(store.append, anchor)
        uow.emit(AuditAnchored(seq=anchor.seq, entry_hash=anchor.entry_hash, at=anchor.at, signature=anchor.signature))
    return anchor


async def run_anchoring(runtime: Runtime) -> None:
    """The worker job: an anchor now, then one per interval."""
    await anchor_chain(runtime)
    await asyncio.sleep(runtime.settings.identity.audit_anchor_interval_seconds)


def latest_anchor(runtime: Runtime) -> Anchor | None:
    """The newest anchor (ValueError when the file's last line is not one)."""
    return anchor_file(runtime).latest()


def judge(signer: AnchorSigner, anchor: Anchor | None, status: dict) -> dict:
    """`audit.verify_chain`'s result (run with `anchored_seq=anchor.seq`) judged against the anchor."""
    public = {k: v for k, v in status.items() if k not in ("anchored_hash", "last_seq")}
    if anchor is None:
        return {**public, "anchored_seq": None, "anchored_at": None, "problem": public.get("problem")}
    result = {**public, "anchored_seq": anchor.seq, "anchored_at": anchor.at}
    if not signer.genuine(anchor):
        return {**result, "valid": False, "problem": "the newest anchor's signature does not match"}
    if not status["valid"]:
        return result
    if status["last_seq"] < anchor.seq:
        return {
            **result,
            "valid": False,
            "broken_at": status["last_seq"] + 1,
            "problem": f"entries {status['last_seq'] + 1} to {anchor.seq} were anchored and are gone",
        }
    if status["anchored_hash"] != anchor.entry_hash:
        return {**result, "valid": False, "broken_at": anchor.seq, "problem": "the anchored entry was replaced"}
    return result
