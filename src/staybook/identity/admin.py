"""Administration: listing users, changing a role, locking an account, and the audit log with its
hash-chain check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from staybook.identity import anchor, audit
from staybook.identity.models import AuditEntry, User
from staybook.identity.schemas import (
    AdminUserOut,
)
from staybook.identity.service import (
    Credentials,
    RequestInfo,
    admin_out,
    revoke_sessions,
    revoke_tokens,
    updated_event,
)
from staybook.kernel.errors import Forbidden, NotFound
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal

# ---------------------------------------------------------------------------- administration


async def list_users(
    runtime: Runtime, creds: Credentials, *, role: str | None, status: str | None, cursor: uuid.UUID | None, limit: int
) -> dict:
    """Users newest first (ids are time-ordered); `next_cursor` continues the list."""
    query = select(User).order_by(User.id.desc()).limit(limit + 1)
    if role:
        query = query.where(User.role == role)
    if status:
        query = query.where(User.status == status)
    if cursor:
        query = query.where(User.id < cursor)
    async with runtime.db.session() as session:
        users = list((await session.scalars(query)).all())
    page = users[:limit]
    return {
        "items": [admin_out(creds, u) for u in page],
        "next_cursor": str(page[-1].id) if len(users) > limit else None,
    }


async def get_user(runtime: Runtime, creds: Credentials, user_id: uuid.UUID) -> AdminUserOut:
    async with runtime.db.session() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user", user_id=str(user_id))
    return admin_out(creds, user)


async def change_role(
    runtime: Runtime, creds: Credentials, admin: Principal, user_id: uuid.UUID, role: str, info: RequestInfo
) -> AdminUserOut:
    """An admin gives a user another role. Admins cannot change their own (no locking the last one out)."""
    if user_id == admin.user_id:
        raise Forbidden("Admins cannot change their own role")
    async with runtime.db.unit_of_work() as uow:
        user = await uow.session.scalar(
            select(User).where(User.id == user_id, User.status == "active").with_for_update()
        )
        if user is None:
            raise NotFound("No such user", user_id=str(user_id))
        previous = user.role
        user.role = role
        user.updated_at = utcnow()
        # Tokens carry the role: the old ones must stop granting it now, not when they expire.
        version = revoke_tokens(uow, user, "role-changed") if role != previous else None
        await audit.append(
            uow.session,
            audit.AuditRecord(
                "user.role_changed",
                "user",
                "success",
                str(user.id),
                admin.user_id,
                admin.role,
                info.ip,
                {"from": previous, "to": role},
            ),
        )
        uow.emit(updated_event(user))
        answer = admin_out(creds, user)
    if version is not None:
        await runtime.token_versions.raised(user.id, version)
    return answer


async def set_locked(
    runtime: Runtime, creds: Credentials, admin: Principal, user_id: uuid.UUID, locked: bool, info: RequestInfo
) -> AdminUserOut:
    """An admin locks an account (its sessions end, its tokens are refused from the next request,
    sign-in and refresh are refused) or unlocks it. Admins cannot lock themselves."""
    if user_id == admin.user_id:
        raise Forbidden("Admins cannot lock their own account")
    version = None
    async with runtime.db.unit_of_work() as uow:
        user = await uow.session.scalar(
            select(User).where(User.id == user_id, User.status == "active").with_for_update()
        )
        if user is None:
            raise NotFound("No such user", user_id=str(user_id))
        if locked and user.locked_at is None:
            user.locked_at = utcnow()
            await revoke_sessions(uow.session, user.id)
            version = revoke_tokens(uow, user, "locked")
        elif not locked and user.locked_at is not None:
            user.locked_at = None
        else:
            return admin_out(creds, user)  # already so: nothing to record
        user.updated_at = utcnow()
        await audit.append(
            uow.session,
            audit.AuditRecord(
                "user.locked" if locked else "user.unlocked",
                "user",
                "success",
                str(user.id),
                admin.user_id,
                admin.role,
                info.ip,
            ),
        )
        answer = admin_out(creds, user)
    if version is not None:
        await runtime.token_versions.raised(user.id, version)
    return answer


async def audit_log(
    runtime: Runtime,
    *,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> dict:
    """Audit entries, newest first, filtered; `next_cursor` is the sequence number to continue below."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit + 1)
    filters = {
        AuditEntry.actor_id: actor_id,
        AuditEntry.action: action,
        AuditEntry.resource_type: resource_type,
        AuditEntry.resource_id: resource_id,
        AuditEntry.result: result,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= _aware(since))
    if until is not None:
        query = query.where(AuditEntry.occurred_at < _aware(until))
    if cursor is not None:
        query = query.where(AuditEntry.seq < cursor)
    async with runtime.db.session() as session:
        entries = list((await session.scalars(query)).all())
    page = entries[:limit]
    return {"items": page, "next_cursor": str(page[-1].seq) if len(entries) > limit else None}


def _aware(moment: datetime) -> datetime:
    """Query times without an offset are read as UTC (the log's time zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def verify_audit_chain(runtime: Runtime) -> dict:
    """The hash chain recomputed, and checked against its newest anchor (truncation shows)."""
    try:
        latest = anchor.latest_anchor(runtime)
    except ValueError as error:
        return {"valid": False, "entries": 0, "broken_at": None, "problem": str(error)}
    async with runtime.db.session() as session:
        status = await audit.verify_chain(session, anchored_seq=latest.seq if latest else None)
    return anchor.judge(anchor.AnchorSigner(runtime.settings), latest, status)
