"""Use cases of the identity context: commands in, events out.

Accounts, sign-in (password, then TOTP when enabled), rotating refresh tokens,
profile and password changes, roles, the audit log, GDPR export and erasure,
and PII key rotation. Every use case opens its own unit of work; failures that
must leave a trace (a wrong password, a reused refresh token) commit their
audit entry before the error is raised.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from staybook.identity import audit, metrics, mfa, residency
from staybook.identity.events import (
    UserRegistered,
    UserSignedIn,
    UserTokensRevoked,
    UserUpdated,
)
from staybook.identity.models import RecoveryCode, RefreshToken, User
from staybook.identity.passwords import PasswordHashing, password_problems
from staybook.identity.pii import PiiVault, normalise_email
from staybook.identity.schemas import (
    AdminUserOut,
    LoginRequest,
    PasswordChange,
    ProfileUpdate,
    RegisterRequest,
    UserOut,
)
from staybook.kernel.errors import Conflict, Forbidden, InvalidInput, TooManyRequests, Unauthorized
from staybook.kernel.metrics import RATE_LIMITED
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.ratelimit import RateLimitRule
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal

log = structlog.get_logger("staybook.identity")

ERASED_NAME = "Deleted user"
INVALID_CREDENTIALS = "Invalid email or password"
ACCOUNT_LOCKED = "This account is locked. Please contact support."


# ---------------------------------------------------------------------------- wiring


@dataclass
class Credentials:
    """What identity keeps per process, its deps (built by `bootstrap.lifespan`): the PII vault, the
    password hasher (with its dummy hash), and the regional stores the ORM hooks write sealed
    records to (identity/residency.py)."""

    vault: PiiVault
    passwords: PasswordHashing
    regions: residency.RegionalStores

    async def close(self) -> None:
        await self.regions.dispose()


# ---------------------------------------------------------------------------- revocation


async def stored_token_version(runtime: Runtime, user_id: uuid.UUID) -> int:
    """The user's token version as stored (0 for an id identity does not know)."""
    async with runtime.db.session() as session:
        version = await session.scalar(select(User.token_version).where(User.id == user_id))
    return version or 0


def revoke_tokens(uow, user: User, reason: str) -> int:
    """Raises the user's token version in the caller's unit of work: every access token issued
    before is refused once the caller commits and calls `runtime.token_versions.raised`."""
    user.token_version = (user.token_version or 0) + 1
    uow.emit(UserTokensRevoked(user_id=user.id, token_version=user.token_version, reason=reason))
    return user.token_version


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None = None
    user_agent: str | None = None


def _rule(name: str, spec: tuple[int, int, int]) -> RateLimitRule:
    return RateLimitRule(name, spec[0], spec[1], spec[2], fail_closed=True)  # credential routes


async def _limit(runtime: Runtime, rule: RateLimitRule, key: str) -> None:
    decision = await runtime.rate_limiter.hit(rule, key)
    if not decision.allowed:
        RATE_LIMITED.labels(rule.name).inc()
        raise TooManyRequests(decision.retry_after_seconds)


def _token_hash(token: str) -> str:
    # Refresh tokens are 256-bit random strings: a plain SHA-256 is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------------- personal data


def _open_pii(creds: Credentials, user: User) -> dict:
    if user.pii is None or user.pii_wrapped_key is None or user.pii_key_id is None:
        return {}
    data_key = creds.vault.data_key(user.pii_key_id, user.pii_wrapped_key)
    return creds.vault.open_fields(data_key, user.pii, user.id)


def _name(user: User, pii: dict) -> str:
    # Sealed with the rest of the record; `users.name` is only read for rows written before that.
    return pii.get("name") or user.name or ""


async def contact_details(
    runtime: Runtime, creds: Credentials, user_id: uuid.UUID, session: AsyncSession | None = None
) -> dict | None:
    """How to reach a user, for the context that writes to them (notifications): email, phone,
    name, locale and time zone, opened from the sealed record. Events carry the user's id, not
    these. None for an unknown or erased user. A consumer passes its unit of work's session: on
    SQLite a second connection would wait for the write lock that very unit of work holds."""
    if session is None:
        async with runtime.db.session() as own:
            user = await own.get(User, user_id)
    else:
        user = await session.get(User, user_id)
    if user is None or user.erased_at is not None:
        return None
    pii = _open_pii(creds, user)
    return {
        "email": pii.get("email"),
        "phone": pii.get("phone"),
        "name": _name(user, pii),
        "locale": user.locale,
        "timezone": user.timezone,
    }


def seal_pii(creds: Credentials, user: User, fields: dict) -> None:
    if user.pii_wrapped_key is None or user.pii_key_id is None:
        user.pii_key_id, user.pii_wrapped_key, data_key = creds.vault.new_data_key()
    else:
        data_key = creds.vault.data_key(user.pii_key_id, user.pii_wrapped_key)
    user.pii = creds.vault.seal_fields(data_key, fields, user.id)


def _totp_secret(creds: Credentials, user: User) -> str | None:
    if user.totp_secret is None or user.pii_wrapped_key is None or user.pii_key_id is None:
        return None
    data_key = creds.vault.data_key(user.pii_key_id, user.pii_wrapped_key)
    return creds.vault.decrypt(data_key, user.totp_secret, user.id).decode()


def user_out(creds: Credentials, user: User) -> UserOut:
    pii = _open_pii(creds, user)
    return UserOut(
        id=user.id,
        email=pii.get("email", ""),
        name=_name(user, pii),
        role=user.role,
        locale=user.locale,
        timezone=user.timezone,
        region=user.region,
        phone=pii.get("phone"),
        date_of_birth=pii.get("date_of_birth"),
        address=pii.get("address"),
        mfa_enabled=user.totp_enabled,
        created_at=user.created_at,
    )


def admin_out(creds: Credentials, user: User) -> AdminUserOut:
    pii = _open_pii(creds, user)
    return AdminUserOut(
        id=user.id,
        email=pii.get("email", ""),
        name=_name(user, pii),
        role=user.role,
        status=user.status,
        region=user.region,
        mfa_enabled=user.totp_enabled,
        locked_at=user.locked_at,
        created_at=user.created_at,
    )


def updated_event(user: User) -> UserUpdated:
    return UserUpdated(user_id=user.id, locale=user.locale, timezone=user.timezone, role=user.role)


async def active_user(session, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    query = select(User).where(User.id == user_id, User.status == "active")
    if for_update:
        query = query.with_for_update()
    user = await session.scalar(query)
    if user is None:
        raise Unauthorized("The account behind this token no longer exists")
    return user


# ---------------------------------------------------------------------------- registration


async def register(runtime: Runtime, creds: Credentials, data: RegisterRequest, info: RequestInfo) -> dict:
    """Creates an account; answers the same whether or not the email was already registered.

    A second registration of an address creates nothing and says nothing (the owner
    signs in as before), so the endpoint cannot be used to test which emails have accounts.
    The password is hashed either way, so timing does not tell either.
    """
    settings = runtime.settings.identity
    await _limit(runtime, _rule("identity.register.ip", settings.register_per_ip), info.ip or "unknown")
    problems = password_problems(
        data.password, min_length=settings.password_min_length, email=data.email, name=data.name
    )
    if problems:
        metrics.REGISTRATIONS.labels("failure").inc()
        raise InvalidInput(
            problems[0].message,
            errors=[{"field": "body.password", "message": p.message, "type": p.code} for p in problems],
        )
    region = data.region or settings.default_region
    if region not in settings.regions:
        raise InvalidInput(f"region must be one of {', '.join(settings.regions)}", field="body.region")
    email = normalise_email(data.email)
    email_hash = creds.vault.email_hash(email)
    password_hash = creds.passwords.hash(data.password)
    accepted = {"email": email, "role": data.role, "detail": "Registration accepted; sign in with your password."}
    try:
        async with runtime.db.unit_of_work() as uow:
            if await uow.session.scalar(select(User.id).where(User.email_hash == email_hash)) is not None:
                await audit.append(
                    uow.session,
                    audit.AuditRecord("user.register", "user", "duplicate", ip=info.ip),
                )
                return accepted
            now = utcnow()
            user = User(
                id=new_id(),
                email_hash=email_hash,
                name=None,
                role=data.role,
                status="active",
                locale=data.locale or "en",
                timezone=data.timezone or "UTC",
                region=region,
                password_hash=password_hash,
                totp_enabled=False,
                totp_last_step=0,
                created_at=now,
                updated_at=now,
            )
            seal_pii(creds, user, {"email": email, "name": data.name, "phone": data.phone})
            uow.session.add(user)
            await uow.session.flush()
            await audit.append(
                uow.session,
                audit.AuditRecord(
                    "user.register", "user", "success", str(user.id), user.id, user.role, info.ip, {"region": region}
                ),
            )
            uow.emit(
                UserRegistered(
                    user_id=user.id,
                    role=user.role,
                    locale=user.locale,
                    timezone=user.timezone,
                    region=user.region,
                )
            )
    except IntegrityError:
        # Two registrations of one address at once: the unique email hash let one through.
        return accepted
    metrics.REGISTRATIONS.labels("success").inc()
    return accepted


# ---------------------------------------------------------------------------- sign-in


async def _record_failure(runtime: Runtime, record: audit.AuditRecord) -> None:
    async with runtime.db.unit_of_work() as uow:
        await audit.append(uow.session, record)


async def _start_session(uow, runtime: Runtime, user: User, family_id: uuid.UUID | None = None) -> dict:
    """A new refresh token (in `family_id`, or a new family) and an access token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    uow.session.add(
        RefreshToken(
            id=new_id(),
            family_id=family_id or new_id(),
            user_id=user.id,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=runtime.settings.identity.refresh_token_ttl_seconds),
        )
    )
    return {
        "access_token": runtime.tokens.issue(user.id, user.role, extra={"ver": user.token_version or 0}),
        "refresh_token": token,
        "token_type": "bearer",
        "expires_in": runtime.settings.identity.access_token_ttl_seconds,
    }


async def _signed_in(uow, runtime: Runtime, user: User, info: RequestInfo, method: str) -> dict:
    tokens = await _start_session(uow, runtime, user)
    await audit.append(
        uow.session,
        audit.AuditRecord(
            "auth.login", "user", "success", str(user.id), user.id, user.role, info.ip, {"method": method}
        ),
    )
    uow.emit(
        UserSignedIn(
            user_id=user.id,
            locale=user.locale,
            ip=info.ip,
            user_agent=info.user_agent,
            at=utcnow(),
        )
    )
    return tokens


async def login(runtime: Runtime, creds: Credentials, data: LoginRequest, info: RequestInfo) -> dict:
    """Password sign-in: tokens, or an MFA challenge when the account has TOTP on.

    Unknown email and wrong password give the same 401, and both run one argon2
    verification (against a dummy hash when there is no account).
    """
    settings = runtime.settings.identity
    email_hash = creds.vault.email_hash(data.email)
    await _limit(runtime, _rule("identity.login.ip", settings.login_per_ip), info.ip or "unknown")
    await _limit(runtime, _rule("identity.login.account", settings.login_per_account), email_hash)
    async with runtime.db.unit_of_work() as uow:
        user = await uow.session.scalar(select(User).where(User.email_hash == email_hash, User.status == "active"))
        ok = creds.passwords.verify(user.password_hash if user else None, data.password)
        locked = ok and user is not None and user.locked_at is not None
        if ok and user is not None and not locked:
            if creds.passwords.needs_rehash(user.password_hash):
                user.password_hash = creds.passwords.hash(data.password)
                user.updated_at = utcnow()
            if user.totp_enabled:
                await audit.append(
                    uow.session,
                    audit.AuditRecord("auth.login", "user", "mfa_required", str(user.id), user.id, user.role, info.ip),
                )
                mfa_token = runtime.tokens.issue(
                    user.id, user.role, extra={"typ": "mfa"}, ttl=timedelta(seconds=settings.mfa_token_ttl_seconds)
                )
                user.mfa_challenge_jti = runtime.tokens.decode(mfa_token, "mfa")["jti"]
                metrics.LOGINS.labels("mfa_required").inc()
                return {"mfa_required": True, "mfa_token": mfa_token}
            metrics.LOGINS.labels("success").inc()
            return await _signed_in(uow, runtime, user, info, "password")
    if locked:
        # Said only to whoever knows the password: the lock is no way to learn which emails have accounts.
        await _record_failure(
            runtime,
            audit.AuditRecord(
                "auth.login", "user", "denied", str(user.id), user.id, user.role, info.ip, {"reason": "locked"}
            ),
        )
        metrics.LOGINS.labels("locked").inc()
        raise Forbidden(ACCOUNT_LOCKED)
    metrics.LOGINS.labels("failure").inc()
    await _record_failure(
        runtime,
        audit.AuditRecord(
            "auth.login",
            "user",
            "failure",
            str(user.id) if user else None,
            user.id if user else None,
            user.role if user else None,
            info.ip,
            {"reason": "invalid-credentials"},
        ),
    )
    raise Unauthorized(INVALID_CREDENTIALS)


async def verify_mfa(runtime: Runtime, creds: Credentials, mfa_token: str, code: str, info: RequestInfo) -> dict:
    """Second step of sign-in: a current TOTP code (each accepted once) or an unused recovery code."""
    settings = runtime.settings.identity
    claims = runtime.tokens.decode(mfa_token, "mfa")
    try:
        user_id = uuid.UUID(claims["sub"])
    except (KeyError, ValueError) as error:
        raise Unauthorized("Invalid mfa token") from error
    await _limit(runtime, _rule("identity.login.ip", settings.login_per_ip), info.ip or "unknown")
    await _limit(runtime, _rule("identity.mfa.account", settings.mfa_verify_per_account), str(user_id))
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, user_id, for_update=True)
        if user.locked_at is not None:
            raise Forbidden(ACCOUNT_LOCKED)
        if user.mfa_challenge_jti is None or claims.get("jti") != user.mfa_challenge_jti:
            raise Unauthorized("Invalid mfa token: it was used already or replaced by a newer sign-in")
        method = await _consume_second_factor(uow.session, creds, user, code)
        if method is not None:
            user.mfa_challenge_jti = None
            return await _signed_in(uow, runtime, user, info, method)
    await _record_failure(
        runtime,
        audit.AuditRecord(
            "auth.mfa_verify", "user", "failure", str(user_id), user_id, None, info.ip, {"reason": "invalid-code"}
        ),
    )
    raise Unauthorized("Invalid MFA code")


async def _consume_second_factor(session, creds: Credentials, user: User, code: str) -> str | None:
    """'totp' or 'recovery-code' when `code` is accepted (and spent); None otherwise. Caller holds the row lock."""
    if not user.totp_enabled:
        return None
    secret = _totp_secret(creds, user)
    if secret and mfa.looks_like_totp(code):
        step = mfa.matching_step(secret, code, last_step=user.totp_last_step)
        if step is None:
            return None
        user.totp_last_step = step
        return "totp"
    spent = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == creds.vault.code_hash(mfa.normalise_recovery_code(code)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return "recovery-code" if spent.rowcount == 1 else None


async def refresh(runtime: Runtime, refresh_token: str, info: RequestInfo) -> dict:
    """Spends a refresh token and issues its successor; a spent token shown again revokes its family.

    The token row is locked (SELECT ... FOR UPDATE), so of concurrent refreshes with
    one token exactly one finds it unspent; the others see it spent, which is what a
    replayed stolen token looks like, and revoke the family.
    """
    token_hash = _token_hash(refresh_token)
    reused: RefreshToken | None = None
    async with runtime.db.unit_of_work() as uow:
        row = await uow.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        now = utcnow()
        if row is not None and row.revoked_at is None and row.used_at is None and row.expires_at > now:
            user = await uow.session.scalar(
                select(User).where(User.id == row.user_id, User.status == "active", User.locked_at.is_(None))
            )
            if user is not None:
                row.used_at = now
                return await _start_session(uow, runtime, user, row.family_id)
        elif row is not None and row.used_at is not None and row.revoked_at is None:
            reused = row
            await _revoke_family(uow.session, row.family_id)
            await audit.append(
                uow.session,
                audit.AuditRecord(
                    "auth.refresh_reuse",
                    "session",
                    "denied",
                    str(row.family_id),
                    row.user_id,
                    None,
                    info.ip,
                    {"detail": "spent refresh token presented again; family revoked"},
                ),
            )
    if reused is not None:
        log.warning("refresh token reuse; family revoked", context={"family_id": str(reused.family_id)})
    raise Unauthorized("Invalid refresh token")


async def _revoke_family(session, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def logout(runtime: Runtime, refresh_token: str) -> None:
    """Revokes the session (the token's whole family). Unknown tokens are ignored: logging out is idempotent."""
    async with runtime.db.unit_of_work() as uow:
        family_id = await uow.session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.token_hash == _token_hash(refresh_token))
        )
        if family_id is not None:
            await _revoke_family(uow.session, family_id)


# ---------------------------------------------------------------------------- the signed-in user


async def get_me(runtime: Runtime, creds: Credentials, principal: Principal) -> UserOut:
    async with runtime.db.session() as session:
        user = await active_user(session, principal.user_id)
        return user_out(creds, user)


async def update_me(runtime: Runtime, creds: Credentials, principal: Principal, data: ProfileUpdate) -> UserOut:
    """Changes the profile; personal fields are re-sealed; `user.updated` announces it."""
    changes = data.model_dump(exclude_unset=True)
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        # null leaves the region as it is, like the other profile fields that cannot be cleared.
        if changes.get("region") is not None and changes["region"] not in runtime.settings.identity.regions:
            raise InvalidInput(
                f"region must be one of {', '.join(runtime.settings.identity.regions)}", field="body.region"
            )
        for field_name in ("locale", "timezone", "region"):
            if changes.get(field_name) is not None:
                setattr(user, field_name, changes[field_name])
        pii = _open_pii(creds, user)
        pii["name"] = changes.get("name") or _name(user, pii)
        user.name = None  # a name written before sealing leaves the plain column now
        for field_name in ("phone", "date_of_birth", "address"):
            if field_name in changes:
                value = changes[field_name]
                pii[field_name] = value.isoformat() if isinstance(value, date) else value
        seal_pii(creds, user, pii)
        user.updated_at = utcnow()
        uow.emit(updated_event(user))
        return user_out(creds, user)


async def change_password(
    runtime: Runtime, creds: Credentials, principal: Principal, data: PasswordChange, info: RequestInfo
) -> dict:
    """Needs the current password; signs out every other session and returns fresh tokens for this one."""
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        current_ok = creds.passwords.verify(user.password_hash, data.current_password)
    if not current_ok:
        await _record_failure(
            runtime,
            audit.AuditRecord("user.password_change", "user", "failure", str(user.id), user.id, user.role, info.ip),
        )
        raise InvalidInput("The current password is wrong", field="body.current_password")
    pii = _open_pii(creds, user)
    problems = password_problems(
        data.new_password,
        min_length=runtime.settings.identity.password_min_length,
        email=pii.get("email"),
        name=_name(user, pii),
    )
    if problems:
        raise InvalidInput(
            problems[0].message,
            errors=[{"field": "body.new_password", "message": p.message, "type": p.code} for p in problems],
        )
    new_hash = creds.passwords.hash(data.new_password)
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        user.password_hash = new_hash
        user.updated_at = utcnow()
        await revoke_sessions(uow.session, user.id)
        version = revoke_tokens(uow, user, "password-changed")
        await audit.append(
            uow.session,
            audit.AuditRecord("user.password_change", "user", "success", str(user.id), user.id, user.role, info.ip),
        )
        tokens = await _start_session(uow, runtime, user)
    await runtime.token_versions.raised(user.id, version)
    return tokens


async def revoke_sessions(session, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def sign_out_everywhere(runtime: Runtime, principal: Principal, info: RequestInfo) -> None:
    """Ends every session of the user: refresh tokens revoked, access tokens refused from the next request."""
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        await revoke_sessions(uow.session, user.id)
        version = revoke_tokens(uow, user, "signed-out-everywhere")
        await audit.append(
            uow.session,
            audit.AuditRecord("auth.logout_all", "user", "success", str(user.id), user.id, user.role, info.ip),
        )
    await runtime.token_versions.raised(user.id, version)


# ---------------------------------------------------------------------------- MFA


async def start_totp(runtime: Runtime, creds: Credentials, principal: Principal) -> dict:
    """A new pending TOTP secret; MFA turns on only when a first code confirms it."""
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled; disable it first to enrol a new device")
        secret = mfa.new_totp_secret()
        pii = _open_pii(creds, user)
        if user.pii_wrapped_key is None:
            seal_pii(creds, user, pii)
        data_key = creds.vault.data_key(user.pii_key_id, user.pii_wrapped_key)
        user.totp_secret = creds.vault.encrypt(data_key, secret.encode(), user.id)
        user.updated_at = utcnow()
        return {"secret": secret, "otpauth_uri": mfa.provisioning_uri(secret, pii.get("email") or str(user.id))}


async def confirm_totp(
    runtime: Runtime, creds: Credentials, principal: Principal, code: str, info: RequestInfo
) -> list[str]:
    """Turns MFA on with a first valid code; returns one-time recovery codes (shown once, stored hashed)."""
    settings = runtime.settings.identity
    await _limit(runtime, _rule("identity.mfa.account", settings.mfa_verify_per_account), str(principal.user_id))
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled")
        secret = _totp_secret(creds, user)
        if secret is None:
            raise Conflict("Start TOTP enrolment first (POST /me/mfa/totp)")
        step = mfa.matching_step(secret, code, last_step=user.totp_last_step)
        if step is None:
            raise InvalidInput("The code does not match; check the device clock", field="body.code")
        user.totp_enabled = True
        user.totp_last_step = step
        user.updated_at = utcnow()
        codes = mfa.new_recovery_codes(settings.recovery_code_count)
        await uow.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        uow.session.add_all(
            RecoveryCode(id=new_id(), user_id=user.id, code_hash=creds.vault.code_hash(mfa.normalise_recovery_code(c)))
            for c in codes
        )
        await audit.append(
            uow.session, audit.AuditRecord("mfa.enabled", "user", "success", str(user.id), user.id, user.role, info.ip)
        )
        return codes


async def disable_totp(
    runtime: Runtime, creds: Credentials, principal: Principal, code: str, info: RequestInfo
) -> None:
    """Turns MFA off; needs a current TOTP code (or a recovery code, for a lost device)."""
    settings = runtime.settings.identity
    await _limit(runtime, _rule("identity.mfa.account", settings.mfa_verify_per_account), str(principal.user_id))
    async with runtime.db.unit_of_work() as uow:
        user = await active_user(uow.session, principal.user_id, for_update=True)
        if not user.totp_enabled:
            raise Conflict("TOTP is not enabled")
        accepted = await _consume_second_factor(uow.session, creds, user, code) is not None
        if accepted:
            user.totp_enabled = False
            user.totp_secret = None
            user.updated_at = utcnow()
            await uow.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await audit.append(
            uow.session,
            audit.AuditRecord(
                "mfa.disabled", "user", "success" if accepted else "failure", str(user.id), user.id, user.role, info.ip
            ),
        )
    if not accepted:
        raise InvalidInput("The code does not match", field="body.code")
