"""The audit log: append-only entries in a SHA-256 hash chain.

Appends are serialised so each entry links to the one before it: on PostgreSQL
by a transaction-scoped advisory lock, on SQLite by its single writer (the
kernel opens write transactions with BEGIN IMMEDIATE). The lock is held only
for the insert, at the end of the caller's transaction. A batch of entries
(`append_many`) takes the lock and reads the chain's tail once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from staybook.identity.models import AuditEntry
from staybook.kernel.orm import utcnow

GENESIS = "0" * 64
# Arbitrary constant: the advisory lock key of the audit chain.
_CHAIN_LOCK = 7_361_200_401


@dataclass(frozen=True)
class AuditRecord:
    action: str
    resource_type: str
    result: str = "success"
    resource_id: str | None = None
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    ip: str | None = None
    details: dict | None = None


def entry_digest(prev_hash: str, seq: int, occurred_at: datetime, record: AuditRecord | AuditEntry) -> str:
    fields = {
        "seq": seq,
        "at": occurred_at.isoformat(timespec="microseconds"),
        "actor_id": str(record.actor_id) if record.actor_id else None,
        "actor_role": record.actor_role,
        "action": record.action,
        "resource_type": record.resource_type,
        "resource_id": record.resource_id,
        "ip": record.ip,
        "result": record.result,
        "details": record.details or {},
    }
    return hashlib.sha256(prev_hash.encode() + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def append(session: AsyncSession, record: AuditRecord) -> None:
    """Adds `record` at the end of the chain, in the caller's transaction."""
    await append_many(session, [record])


async def append_many(session: AsyncSession, records: Sequence[AuditRecord]) -> None:
    """Adds `records` at the end of the chain in order, in the caller's transaction: one lock, one
    read of the tail and one insert for all of them (the event consumers append per batch)."""
    if not records:
        return
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    last = (
        await session.execute(select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1))
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
    # Microsecond precision survives both engines, so the digest recomputes identically.
    occurred_at = utcnow()
    rows = []
    for record in records:
        entry_hash = entry_digest(prev_hash, seq, occurred_at, record)
        rows.append(
            {
                "seq": seq,
                "occurred_at": occurred_at,
                "actor_id": record.actor_id,
                "actor_role": record.actor_role,
                "action": record.action,
                "resource_type": record.resource_type,
                "resource_id": record.resource_id,
                "ip": record.ip,
                "result": record.result,
                "details": record.details or {},
                "prev_hash": prev_hash,
                "entry_hash": entry_hash,
            }
        )
        seq, prev_hash = seq + 1, entry_hash
    # Core inserts, no ORM objects: an ORM object plus flush per entry was a visible share of
    # the worker's CPU.
    await session.execute(insert(AuditEntry), rows)


async def verify_chain(session: AsyncSession, batch: int = 1000, *, anchored_seq: int | None = None) -> dict:
    """Recomputes every hash; reports the first broken link, if any, the last sequence number, and
    the entry hash at `anchored_seq` (for the check against the newest anchor, identity/anchor.py)."""
    prev_hash, checked, after, anchored_hash = GENESIS, 0, 0, None
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
            )
        ).all()
        if not rows:
            return {
                "valid": True,
                "entries": checked,
                "broken_at": None,
                "last_seq": after,
                "anchored_hash": anchored_hash,
                "problem": None,
            }
        for entry in rows:
            expected = entry_digest(prev_hash, entry.seq, entry.occurred_at, entry)
            if entry.prev_hash != prev_hash or entry.entry_hash != expected:
                return {
                    "valid": False,
                    "entries": checked,
                    "broken_at": entry.seq,
                    "last_seq": after,
                    "anchored_hash": anchored_hash,
                    "problem": "an entry does not match its hash or its predecessor",
                }
            if entry.seq == anchored_seq:
                anchored_hash = entry.entry_hash
            prev_hash, checked, after = entry.entry_hash, checked + 1, entry.seq
