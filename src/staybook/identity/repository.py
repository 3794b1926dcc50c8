"""The identity context's queries that the use cases share: users by id or email hash, refresh
token families, recovery codes. Every function runs in the caller's session (its transaction)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from staybook.identity.models import RecoveryCode, RefreshToken, User
from staybook.kernel.errors import Unauthorized
from staybook.kernel.orm import utcnow


async def token_version(session: AsyncSession, user_id: uuid.UUID) -> int:
    """The user's token version as stored (0 for an id identity does not know)."""
    return await session.scalar(select(User.token_version).where(User.id == user_id)) or 0


async def active_user(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    query = select(User).where(User.id == user_id, User.status == "active")
    if for_update:
        query = query.with_for_update()
    user = await session.scalar(query)
    if user is None:
        raise Unauthorized("The account behind this token no longer exists")
    return user


async def email_taken(session: AsyncSession, email_hash: str) -> bool:
    return await session.scalar(select(User.id).where(User.email_hash == email_hash)) is not None


async def active_user_by_email(session: AsyncSession, email_hash: str) -> User | None:
    return await session.scalar(select(User).where(User.email_hash == email_hash, User.status == "active"))


async def may_refresh(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user a refresh token may start a session for: active and not locked."""
    return await session.scalar(
        select(User).where(User.id == user_id, User.status == "active", User.locked_at.is_(None))
    )


async def refresh_token_locked(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """The refresh token row, locked (SELECT ... FOR UPDATE): concurrent refreshes with one token
    take turns, so exactly one finds it unspent."""
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update())


async def family_of(session: AsyncSession, token_hash: str) -> uuid.UUID | None:
    return await session.scalar(select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash))


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_sessions(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def spend_recovery_code(session: AsyncSession, user_id: uuid.UUID, code_hash: str) -> bool:
    """Marks the user's unused recovery code with this hash used; False when there is none."""
    spent = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == code_hash, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return spent.rowcount == 1


async def forget_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
