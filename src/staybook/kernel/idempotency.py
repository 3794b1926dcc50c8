"""Idempotency keys: a retried mutating request gets the first answer, never a second effect.

The protocol, for any mutating endpoint:

1. `claim(...)` inserts `(scope, key)` in its own short transaction. The primary key
   decides the race, not a read-then-write: the loser sees the winner's row and gets
   the stored answer (`Replay`), a 409 while the winner is still working, or a 422 when
   the same key comes with a different request (its fingerprint differs).
2. The use case does its work and, inside ITS OWN unit of work, calls
   `claim.record(session, status, body)`: the business change and the stored answer
   commit together, so a crash can never leave a change without its answer (the retry
   would then repeat the change) or an answer without its change.
3. An expected failure (a StaybookError, its transaction rolled back) is stored with
   `claim.record_failure(...)`: replays of a refused request are refused the same way.
   An unexpected error, or a 5xx StaybookError (a dependency such as the payment
   provider failed), `release()`s the claim so the client may retry with the same key.

A claim left `in_progress` by a crashed process is taken over after `lock_seconds`
(its work never committed: the answer would have committed with it). Keys belong to
a scope (the user id), so two users' keys never collide, and expire after the TTL.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Index, Integer, String, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import Request
from starlette.responses import Response

from staybook.kernel.db import Database, insert_on_conflict
from staybook.kernel.errors import PROBLEM_CONTENT_TYPE, Conflict, InvalidInput, StaybookError, error_response
from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
IN_PROGRESS, COMPLETED = "in_progress", "completed"


class IdempotencyKey(Base):
    """One claimed key of one scope, with the answer once the request completed."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)


_CLAIM = insert_on_conflict(
    IdempotencyKey.__table__,
    ("scope", "key", "fingerprint", "state", "created_at", "locked_until", "expires_at"),
    ("scope", "key"),
)


class KeyInUse(Conflict):
    code, title = "idempotency-key-in-use", "A request with this Idempotency-Key is still being processed"


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of the request's method, path and canonical JSON body."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def validate_key(key: str | None, *, required: bool = True) -> str | None:
    if key is None or not key.strip():
        if required:
            raise InvalidInput(f"The {HEADER} header is required for this request", field=f"header.{HEADER}")
        return None
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable characters", field=f"header.{HEADER}")
    return key


@dataclass(frozen=True)
class Replay:
    """The stored answer of the first request with this key."""

    status: int
    body: Any


@dataclass
class Claim:
    """This request owns the key until it records its answer (or releases the key)."""

    store: IdempotencyStore
    scope: str
    key: str
    fingerprint: str

    async def record(self, session: AsyncSession, status: int, body: Any) -> None:
        """Stores the answer in the caller's transaction (commit it with the business change)."""
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == self.scope, IdempotencyKey.key == self.key)
            .values(state=COMPLETED, response_status=status, response_body=body)
        )

    async def stored_answer(self, session: AsyncSession) -> tuple[int, Any] | None:
        """The answer stored under this key meanwhile by someone else (see `record_if_unanswered`)."""
        row = (
            await session.execute(
                select(IdempotencyKey.state, IdempotencyKey.response_status, IdempotencyKey.response_body).where(
                    IdempotencyKey.scope == self.scope, IdempotencyKey.key == self.key
                )
            )
        ).first()
        if row is None or row.state != COMPLETED:
            return None
        return row.response_status, row.response_body

    async def record_failure(self, error: StaybookError, instance: str | None = None) -> None:
        """Stores a refused request's problem answer in a transaction of its own."""
        response = error_response(error, instance=instance)
        async with self.store.db.unit_of_work() as uow:
            await self.record(uow.session, response.status_code, orjson.loads(response.body))

    async def release(self) -> None:
        """Forgets the claim (an unexpected error): a retry with the key runs afresh."""
        async with self.store.db.unit_of_work() as uow:
            await uow.session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.scope == self.scope,
                    IdempotencyKey.key == self.key,
                    IdempotencyKey.state == IN_PROGRESS,
                )
            )


async def record_if_unanswered(session: AsyncSession, scope: str, key: str, status: int, body: Any) -> bool:
    """Stores an answer for a claimed key that has none yet (its request died or stopped waiting),
    in the caller's transaction; a key already answered keeps its first answer. True if stored."""
    result = await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key, IdempotencyKey.state == IN_PROGRESS)
        .values(state=COMPLETED, response_status=status, response_body=body)
    )
    return result.rowcount == 1


class IdempotencyStore:
    def __init__(self, db: Database, ttl_seconds: int, lock_seconds: int = 60) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.lock = timedelta(seconds=lock_seconds)

    async def claim(self, scope: uuid.UUID | str, key: str, request_fingerprint: str) -> Claim | Replay:
        """Claims the key for this request, or returns the first request's answer.

        Raises InvalidInput (422) when the key was used with a different request and
        KeyInUse (409) while the first request with the key is still running.
        """
        scope = str(scope)
        now = utcnow()
        row = {
            "scope": scope,
            "key": key,
            "fingerprint": request_fingerprint,
            "state": IN_PROGRESS,
            "created_at": now,
            "locked_until": now + self.lock,
            "expires_at": now + self.ttl,
        }
        # The claim needs no WAL flush of its own: the business change that follows commits durably
        # and flushes the WAL up to and including this claim; without that change a lost claim is harmless.
        async with self.db.unit_of_work(flush_wal=False) as uow:
            inserted = await uow.session.execute(_CLAIM, row)
            if inserted.rowcount == 1:
                return Claim(self, scope, key, request_fingerprint)
            # Taken: an expired key or an abandoned claim (its work never committed) is taken over
            # with one guarded UPDATE, so of two racing takers exactly one wins.
            taken_over = await uow.session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.scope == scope,
                    IdempotencyKey.key == key,
                    or_(
                        IdempotencyKey.expires_at <= now,
                        (IdempotencyKey.state == IN_PROGRESS) & (IdempotencyKey.locked_until <= now),
                    ),
                )
                .values(**row, response_status=None, response_body=None)
            )
            if taken_over.rowcount == 1:
                return Claim(self, scope, key, request_fingerprint)
            existing = (
                await uow.session.execute(
                    select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
                )
            ).scalar_one()
        if existing.fingerprint != request_fingerprint:
            raise InvalidInput(
                f"This {HEADER} was already used with a different request",
                field=f"header.{HEADER}",
            )
        if existing.state == IN_PROGRESS:
            raise KeyInUse(f"The first request with this {HEADER} has not finished; retry shortly")
        return Replay(existing.response_status, existing.response_body)

    async def purge_expired(self) -> int:
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow()))
        return result.rowcount or 0


async def run_idempotent(
    request: Request,
    db: Database,
    ttl_seconds: int,
    *,
    scope: uuid.UUID | str,
    body: Any,
    work: Callable[[Claim | None], Awaitable[tuple[int, Any]]],
    required: bool = True,
) -> Response:
    """Runs `work` at most once per (scope, Idempotency-Key); a retry gets the first answer.

    `work(claim)` must call `claim.record(session, status, body)` inside the unit of work
    that makes its change (claim is None when the key is optional and absent), and
    returns (status, body) for this response.
    """
    key = validate_key(request.headers.get(HEADER), required=required)
    if key is None:
        status, payload = await work(None)
        return _json(status, payload)
    store = IdempotencyStore(db, ttl_seconds)
    outcome = await store.claim(scope, key, fingerprint(request.method, request.url.path, body))
    if isinstance(outcome, Replay):
        return _json(outcome.status, outcome.body, {REPLAY_HEADER: "true"})
    try:
        status, payload = await work(outcome)
    except StaybookError as error:
        if error.status >= 500:  # a dependency failed: not an answer to keep, the client may retry with the key
            await outcome.release()
        else:
            await outcome.record_failure(error, instance=request.url.path)
        raise
    except BaseException:
        await outcome.release()
        raise
    return _json(status, payload)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    media_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    return Response(orjson.dumps(payload), status_code=status, media_type=media_type, headers=headers)
