"""GDPR: a user's export of their data across contexts, erasure (the account tombstoned, the sealed
personal data and its key destroyed, `user.erased` for the other contexts), and re-keying the
sealed data after a master key rotation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, or_, select

from staybook.identity import audit, residency
from staybook.identity.events import (
    PERSONAL_PAYLOAD_KEYS,
    UserErased,
    UserExported,
)
from staybook.identity.models import AuditEntry, RecoveryCode, RefreshToken, User
from staybook.identity.service import (
    ERASED_NAME,
    Credentials,
    RequestInfo,
    active_user,
    revoke_tokens,
    user_out,
)
from staybook.kernel.models import OutboxMessage
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal

# ---------------------------------------------------------------------------- GDPR


async def export_me(runtime: Runtime, creds: Credentials, principal: Principal, info: RequestInfo) -> dict[str, Any]:
    """Everything identity holds about the user, as JSON (GDPR art. 15/20); announces `user.exported`."""
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id)
        sessions = (
            await uow.session.scalars(
                select(RefreshToken).where(RefreshToken.user_id == user.id).order_by(RefreshToken.created_at)
            )
        ).all()
        entries = (
            await uow.session.scalars(
                select(AuditEntry)
                .where(or_(AuditEntry.actor_id == user.id, AuditEntry.resource_id == str(user.id)))
                .order_by(AuditEntry.seq)
            )
        ).all()
        codes_left = await uow.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        now = utcnow()
        await audit.append(
            uow.session,
            audit.AuditRecord("user.exported", "user", "success", str(user.id), user.id, user.role, info.ip),
        )
        uow.emit(UserExported(user_id=user.id, at=now))
        profile = user_out(creds, user).model_dump(mode="json")
    other_contexts = {
        context: await export(runtime, user.id) for context, export in runtime.wiring.personal_data_exports.items()
    }
    return {
        **other_contexts,
        "exported_at": now.isoformat(),
        "profile": {**profile, "status": user.status, "updated_at": user.updated_at.isoformat()},
        "mfa": {"totp_enabled": user.totp_enabled, "unused_recovery_codes": codes_left},
        "sessions": [
            {
                "family_id": str(s.family_id),
                "created_at": s.created_at.isoformat(),
                "expires_at": s.expires_at.isoformat(),
                "used_at": s.used_at.isoformat() if s.used_at else None,
                "revoked_at": s.revoked_at.isoformat() if s.revoked_at else None,
            }
            for s in sessions
        ],
        "audit_log": [
            {
                "seq": e.seq,
                "occurred_at": e.occurred_at.isoformat(),
                "action": e.action,
                "resource_type": e.resource_type,
                "resource_id": e.resource_id,
                "ip": e.ip,
                "result": e.result,
                "details": e.details,
            }
            for e in entries
        ],
    }


def _scrubbed(payload: dict, user_id: uuid.UUID) -> dict:
    replacement = {"email": _erased_email(user_id), "name": ERASED_NAME, "phone": None, "ip": None, "user_agent": None}
    return {k: (replacement[k] if k in PERSONAL_PAYLOAD_KEYS else v) for k, v in payload.items()}


def _erased_email(user_id: uuid.UUID) -> str:
    return f"erased-{user_id}@invalid"


async def erase_me(runtime: Runtime, creds: Credentials, principal: Principal, info: RequestInfo) -> None:
    """Erases the user's personal data (GDPR art. 17) and announces `user.erased`.

    The row stays, anonymised, so bookings' financial records keep a valid owner id;
    the data key is destroyed (crypto-shredding), sessions and MFA codes are deleted,
    and identity's own events still in the outbox lose their personal fields. Other
    contexts anonymise what they hold when they see `user.erased`.
    """
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        now = utcnow()
        user.email_hash = creds.vault.email_hash(_erased_email(user.id))
        user.name = None
        user.status = "erased"
        user.password_hash = None
        user.pii = None
        user.pii_wrapped_key = None
        user.pii_key_id = None
        user.totp_secret = None
        user.totp_enabled = False
        user.locale = "en"
        user.timezone = "UTC"
        user.erased_at = now
        user.updated_at = now
        await uow.session.execute(delete(RefreshToken).where(RefreshToken.user_id == user.id))
        await uow.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        rows = (
            await uow.session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.subject.like("%.identity.%"), OutboxMessage.created_at >= user.created_at
                )
            )
        ).all()
        for row in rows:
            if row.payload.get("user_id") == str(user.id):
                row.payload = _scrubbed(row.payload, user.id)
        version = revoke_tokens(uow, user, "erased")
        await audit.append(
            uow.session, audit.AuditRecord("user.erased", "user", "success", str(user.id), user.id, None, info.ip)
        )
        uow.emit(UserErased(user_id=user.id, at=now))
    await runtime.token_versions.raised(user.id, version)


# ---------------------------------------------------------------------------- PII key rotation


async def rotate_pii_keys(runtime: Runtime, creds: Credentials, batch_size: int = 500) -> int:
    """Re-wraps every data key not under the active master key; returns how many were re-wrapped.

    Batches commit one by one and lock only their own rows (SKIP LOCKED on
    PostgreSQL), so sign-ins and profile edits go on during a rotation.
    """
    vault = creds.vault
    total = 0
    while True:
        async with runtime.db.unit_of_work() as uow:
            query = (
                select(User)
                .where(User.pii_key_id.is_not(None), User.pii_key_id != vault.active_key_id)
                .order_by(User.id)
                .limit(batch_size)
            )
            if runtime.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            users = (await uow.session.scalars(query)).all()
            for user in users:
                user.pii_key_id, user.pii_wrapped_key = vault.rewrap(user.pii_key_id, user.pii_wrapped_key)
        total += len(users)
        if len(users) < batch_size:
            return total + await residency.rotate_keys(creds.regions, vault.rewrap, vault.active_key_id, batch_size)
