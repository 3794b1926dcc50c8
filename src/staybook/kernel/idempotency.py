"""Idempotency keys: a retried mutating request gets the first answer, never a second effect.

The protocol, for any mutating endpoint:

1. `run_idempotent` makes a `Claim` for `(scope, key)` (no I/O yet) and calls the use case.
2. The use case calls `await claim.take(uow)` first thing in the unit of work that makes its
   change: one `INSERT … ON CONFLICT` of the key, in the SAME transaction as the change. The
   primary key decides the race, not a read-then-write: a second request with the key waits
   on the first one's uncommitted row, then sees it. A key already answered raises `Replayed`
   (the first answer is sent back), one used with a different request 422, one still being
   worked on by a committed claim (a payment waiting for its provider) 409.
3. It stores its answer with `claim.record(uow, status, body)` in the unit of work that makes
   the change: the business change, the claim and the answer commit together, so a crash can
   never leave a change without its answer (the retry would then repeat the change) or an
   answer without its change. A use case spanning several transactions (the payment saga)
   commits its claim `in_progress` with its first one and records the answer with the last.
4. An expected failure (a StaybookError, its transaction rolled back) is stored with
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
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Index, Integer, String, delete
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import Request
from starlette.responses import Response

from staybook.kernel.crypto import Sealer
from staybook.kernel.db import Database, Sql, UnitOfWork
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


_TABLE = IdempotencyKey.__table__
# Inserts the claim, or takes over an expired key or an abandoned claim (its work never
# committed); of two racing takers exactly one gets a row back.
_TAKE = Sql(
    "INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_at, locked_until, expires_at)"
    " VALUES (:scope, :key, :fingerprint, 'in_progress', :now, :locked_until, :expires_at)"
    " ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'in_progress',"
    " response_status = NULL, response_body = NULL, created_at = excluded.created_at,"
    " locked_until = excluded.locked_until, expires_at = excluded.expires_at"
    " WHERE idempotency_keys.expires_at <= :now"
    " OR (idempotency_keys.state = 'in_progress' AND idempotency_keys.locked_until <= :now)"
    " RETURNING scope",
    table=_TABLE,
    types={"now": _TABLE.c.created_at.type},
    returns=[_TABLE.c.scope],
)
_EXISTING = Sql(
    "SELECT fingerprint, state, response_status, response_body FROM idempotency_keys"
    " WHERE scope = :scope AND key = :key",
    table=_TABLE,
    returns=[_TABLE.c.fingerprint, _TABLE.c.state, _TABLE.c.response_status, _TABLE.c.response_body],
)
_RECORD = Sql(
    "UPDATE idempotency_keys SET state = 'completed', response_status = :response_status,"
    " response_body = :response_body WHERE scope = :scope AND key = :key",
    table=_TABLE,
)
_RECORD_IF_UNANSWERED = Sql(
    "UPDATE idempotency_keys SET state = 'completed', response_status = :response_status,"
    " response_body = :response_body WHERE scope = :scope AND key = :key AND state = 'in_progress'",
    table=_TABLE,
)
# A refused request's answer when its claim was rolled back with its transaction: stored unless
# another request with the key has claimed it meanwhile.
_RECORD_REFUSED = Sql(
    "INSERT INTO idempotency_keys (scope, key, fingerprint, state, response_status, response_body, created_at,"
    " locked_until, expires_at) VALUES (:scope, :key, :fingerprint, 'completed', :response_status,"
    " :response_body, :created_at, :locked_until, :expires_at) ON CONFLICT (scope, key) DO NOTHING",
    table=_TABLE,
)
# Only this request's own claim (its lock deadline tells it from a later taker's).
_RELEASE = Sql(
    "DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key AND state = 'in_progress'"
    " AND locked_until = :locked_until",
    table=_TABLE,
)


class KeyInUse(Conflict):
    code, title = "idempotency-key-in-use", "A request with this Idempotency-Key is still being processed"


class Replayed(Exception):  # noqa: N818 - not an error: the first answer, to be sent again
    """Raised by `Claim.take`: this key was answered already; `run_idempotent` replays the answer."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


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


class Claim:
    """This request's hold on its key: taken in the use case's transaction, answered in the last one."""

    __slots__ = ("db", "scope", "key", "fingerprint", "created_at", "locked_until", "expires_at", "refused")

    def __init__(
        self, db: Database, scope: str, key: str, request_fingerprint: str, *, ttl: timedelta, lock: timedelta
    ) -> None:
        self.db = db
        self.scope, self.key, self.fingerprint = scope, key, request_fingerprint
        self.created_at = utcnow()
        self.locked_until = self.created_at + lock
        self.expires_at = self.created_at + ttl
        self.refused = False  # take() refused the key: not this request's to answer or release

    async def take(self, uow: UnitOfWork) -> None:
        """Claims the key in `uow`'s transaction; raises Replayed, InvalidInput (422: the key was used
        with a different request) or KeyInUse (409: the first request with the key is still running)."""
        params = {
            "scope": self.scope,
            "key": self.key,
            "fingerprint": self.fingerprint,
            "now": self.created_at,
            "locked_until": self.locked_until,
            "expires_at": self.expires_at,
        }
        if await uow.fetchrow(_TAKE, params) is not None:
            return
        existing = await uow.fetchrow(_EXISTING, params)
        self.refused = True
        if existing is None:
            # The claim we collided with was released between the two statements (its request
            # failed): nothing to replay, and the caller may retry at once.
            raise KeyInUse(f"The first request with this {HEADER} has just ended; retry")
        if existing.fingerprint != self.fingerprint:
            raise InvalidInput(f"This {HEADER} was already used with a different request", field=f"header.{HEADER}")
        if existing.state == IN_PROGRESS:
            raise KeyInUse(f"The first request with this {HEADER} has not finished; retry shortly")
        raise Replayed(existing.response_status, opened_answer(self.db.sealer, existing.response_body))

    def record(self, uow: UnitOfWork, status: int, body: Any) -> None:
        """Stores the answer in the caller's transaction (it commits with the business change)."""
        sealed = sealed_answer(uow.sealer, body)
        uow.defer(_RECORD, {"scope": self.scope, "key": self.key, "response_status": status, "response_body": sealed})

    async def stored_answer(self, uow: UnitOfWork) -> tuple[int, Any] | None:
        """The answer stored under this key meanwhile by someone else (see `record_if_unanswered`)."""
        row = await uow.fetchrow(_EXISTING, {"scope": self.scope, "key": self.key})
        if row is None or row.state != COMPLETED:
            return None
        return row.response_status, opened_answer(self.db.sealer, row.response_body)

    async def record_failure(self, error: StaybookError, instance: str | None = None) -> None:
        """Stores a refused request's problem answer in a transaction of its own."""
        response = error_response(error, instance=instance)
        answer = {
            "scope": self.scope,
            "key": self.key,
            "fingerprint": self.fingerprint,
            "response_status": response.status_code,
            "response_body": orjson.loads(response.body),
            "created_at": self.created_at,
            "locked_until": self.locked_until,
            "expires_at": self.expires_at,
        }
        async with self.db.transaction() as uow:
            # The claim committed with an earlier transaction (a payment's first step), or it was
            # rolled back with the refused one.
            if not await uow.execute(_RECORD_IF_UNANSWERED_OWN, answer):
                await uow.execute(_RECORD_REFUSED, answer)

    async def release(self) -> None:
        """Forgets the claim (an unexpected error): a retry with the key runs afresh."""
        async with self.db.transaction(autocommit=True) as uow:
            await uow.execute(_RELEASE, {"scope": self.scope, "key": self.key, "locked_until": self.locked_until})


_RECORD_IF_UNANSWERED_OWN = Sql(
    "UPDATE idempotency_keys SET state = 'completed', response_status = :response_status,"
    " response_body = :response_body WHERE scope = :scope AND key = :key AND state = 'in_progress'"
    " AND locked_until = :locked_until",
    table=_TABLE,
)


async def record_if_unanswered(uow: UnitOfWork, scope: str, key: str, status: int, body: Any) -> bool:
    """Stores an answer for a claimed key that has none yet (its request died or stopped waiting),
    in the caller's transaction; a key already answered keeps its first answer. True if stored."""
    params = {"scope": scope, "key": key, "response_status": status, "response_body": sealed_answer(uow.sealer, body)}
    return await uow.execute(_RECORD_IF_UNANSWERED, params) == 1


_ANSWER = "idempotency.response"


async def forget_answers(uow: UnitOfWork, scope: str) -> None:
    """Deletes every stored answer of one scope (a user's erasure: the answers echo their data)."""
    await uow.session.execute(delete(IdempotencyKey).where(IdempotencyKey.scope == scope))


def sealed_answer(sealer: Sealer | None, body: Any) -> Any:
    """A stored answer is sealed: a booking's echoes the guest's name, email and phone."""
    return {"sealed": sealer.seal(body, _ANSWER)} if sealer is not None else body


def opened_answer(sealer: Sealer | None, stored: Any) -> Any:
    if isinstance(stored, dict) and stored.keys() == {"sealed"} and sealer is not None:
        return sealer.open(stored["sealed"], _ANSWER)
    return stored  # a problem body (no personal data), or an answer stored before sealing


class IdempotencyStore:
    def __init__(self, db: Database, ttl_seconds: int, lock_seconds: int = 60) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.lock = timedelta(seconds=lock_seconds)

    def claim(self, scope: uuid.UUID | str, key: str, request_fingerprint: str) -> Claim:
        """A claim on the key for this request, to be taken in the use case's unit of work."""
        return Claim(self.db, str(scope), key, request_fingerprint, ttl=self.ttl, lock=self.lock)

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

    `work(claim)` must `await claim.take(uow)` at the start of the unit of work that makes its
    change and `claim.record(uow, status, body)` in the one that completes it (claim is None
    when the key is optional and absent), and returns (status, body) for this response.
    """
    key = validate_key(request.headers.get(HEADER), required=required)
    if key is None:
        status, payload = await work(None)
        return _json(status, payload)
    path = request.url.path
    claim = IdempotencyStore(db, ttl_seconds).claim(scope, key, fingerprint(request.method, path, body))
    status, payload, replayed = await answer_once(claim, work, instance=path)
    return _json(status, payload, {REPLAY_HEADER: "true"} if replayed else None)


async def answer_once(
    claim: Claim, work: Callable[[Claim | None], Awaitable[tuple[int, Any]]], *, instance: str
) -> tuple[int, Any, bool]:
    """`work(claim)` under a taken claim: (status, body, replayed). A replay gives the first answer
    (a refusal's problem body, status >= 400, included); an expected failure is stored as the key's
    answer and raised, and a passing or 5xx one releases the key so that a retry runs afresh. Also
    what the web pages call with the key their forms carry."""
    try:
        status, payload = await work(claim)
    except Replayed as replay:
        return replay.status, replay.body, True
    except StaybookError as error:
        if claim.refused:  # the key is another request's: nothing of ours to store or release
            raise
        if error.status >= 500 or error.transient:
            # A dependency failed, or the state is passing: not an answer to keep, the client may
            # retry with the key (and get the real outcome once there is one).
            await claim.release()
        else:
            await claim.record_failure(error, instance=instance)
        raise
    except BaseException:
        if not claim.refused:
            await claim.release()
        raise
    return status, payload, False


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    media_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    return Response(orjson.dumps(payload), status_code=status, media_type=media_type, headers=headers)
