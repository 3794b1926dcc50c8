"""HTTP routes of the identity context: /auth (sign-in), /me (the signed-in user), /admin (users, audit log)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from staybook.identity import admin as administration
from staybook.identity import privacy, service
from staybook.identity.bootstrap import IdentityDep
from staybook.identity.schemas import (
    AdminUserOut,
    AuditChainStatus,
    AuditEntryOut,
    LoginRequest,
    MfaChallenge,
    MfaVerifyRequest,
    PasswordChange,
    ProfileUpdate,
    RecoveryCodes,
    RefreshRequest,
    RegisterRequest,
    RoleChange,
    TokenPair,
    TotpCode,
    TotpSetup,
    UserOut,
)
from staybook.kernel.gateway import client_ip
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.schemas import Page
from staybook.kernel.security import Principal, current_principal, require_role

router = APIRouter(tags=["identity"])

# Re-exported for other contexts: the dependencies that give a route its caller.
current_user = current_principal
__all__ = ["current_user", "require_role", "router"]


def request_info(request: Request) -> service.RequestInfo:
    agent = request.headers.get("user-agent")
    return service.RequestInfo(ip=client_ip(request), user_agent=agent[:300] if agent else None)


# ---------------------------------------------------------------------------- /auth


@router.post("/auth/register", status_code=201, summary="Create an account (guest or host)")
async def register(
    creds: IdentityDep,
    body: RegisterRequest,
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await service.register(runtime, creds, body, info)


@router.post(
    "/auth/login",
    response_model=TokenPair | MfaChallenge,
    summary="Sign in with email and password; tokens, or an MFA challenge",
)
async def login(
    creds: IdentityDep,
    body: LoginRequest,
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await service.login(runtime, creds, body, info)


@router.post("/auth/mfa/verify", response_model=TokenPair, summary="Second sign-in step: TOTP or recovery code")
async def verify_mfa(
    creds: IdentityDep,
    body: MfaVerifyRequest,
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await service.verify_mfa(runtime, creds, body.mfa_token, body.code, info)


@router.post("/auth/refresh", response_model=TokenPair, summary="Exchange a refresh token for new tokens")
async def refresh(
    body: RefreshRequest,
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await service.refresh(runtime, body.refresh_token, info)


@router.post("/auth/logout", status_code=204, summary="Revoke the session of a refresh token")
async def logout(body: RefreshRequest, runtime: Runtime = Depends(get_runtime)) -> Response:
    await service.logout(runtime, body.refresh_token)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- /me


@router.get("/me", response_model=UserOut, summary="The signed-in user's profile")
async def me(
    creds: IdentityDep, principal: Principal = Depends(current_principal), runtime: Runtime = Depends(get_runtime)
) -> UserOut:
    return await service.get_me(runtime, creds, principal)


@router.patch("/me", response_model=UserOut, summary="Change the profile")
async def update_me(
    creds: IdentityDep,
    body: ProfileUpdate,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> UserOut:
    return await service.update_me(runtime, creds, principal, body)


@router.post("/me/password", response_model=TokenPair, summary="Change the password; other sessions end")
async def change_password(
    creds: IdentityDep,
    body: PasswordChange,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await service.change_password(runtime, creds, principal, body, info)


@router.post("/me/sessions/revoke", status_code=204, summary="Sign out everywhere: every session and access token ends")
async def sign_out_everywhere(
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> Response:
    await service.sign_out_everywhere(runtime, principal, info)
    return Response(status_code=204)


@router.post("/me/mfa/totp", response_model=TotpSetup, summary="Start TOTP enrolment: secret and otpauth URI")
async def start_totp(
    creds: IdentityDep, principal: Principal = Depends(current_principal), runtime: Runtime = Depends(get_runtime)
) -> dict:
    return await service.start_totp(runtime, creds, principal)


@router.post("/me/mfa/totp/confirm", response_model=RecoveryCodes, summary="Turn TOTP on with a first code")
async def confirm_totp(
    creds: IdentityDep,
    body: TotpCode,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return {"recovery_codes": await service.confirm_totp(runtime, creds, principal, body.code, info)}


@router.delete("/me/mfa/totp", status_code=204, summary="Turn TOTP off (needs a current code)")
async def disable_totp(
    creds: IdentityDep,
    body: TotpCode,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> Response:
    await service.disable_totp(runtime, creds, principal, body.code, info)
    return Response(status_code=204)


@router.get("/me/export", summary="Everything staybook holds about you, from every context, as JSON (GDPR)")
async def export_me(
    creds: IdentityDep,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> dict:
    return await privacy.export_me(runtime, creds, principal, info)


@router.delete("/me", status_code=204, summary="Erase your account and personal data (GDPR)")
async def erase_me(
    creds: IdentityDep,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> Response:
    await privacy.erase_me(runtime, creds, principal, info)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- /admin

admin_only = require_role("admin")


@router.get("/admin/users", response_model=Page[AdminUserOut], summary="List users (admin)")
async def list_users(
    creds: IdentityDep,
    role: Literal["guest", "host", "admin"] | None = None,
    status: Literal["active", "erased"] | None = None,
    cursor: uuid.UUID | None = None,
    limit: int = Query(50, ge=1, le=200),
    _: Principal = Depends(admin_only),
    runtime: Runtime = Depends(get_runtime),
) -> dict:
    return await administration.list_users(runtime, creds, role=role, status=status, cursor=cursor, limit=limit)


@router.get("/admin/users/{user_id}", response_model=AdminUserOut, summary="One user (admin)")
async def get_user(
    creds: IdentityDep, user_id: uuid.UUID, _: Principal = Depends(admin_only), runtime: Runtime = Depends(get_runtime)
) -> AdminUserOut:
    return await administration.get_user(runtime, creds, user_id)


@router.patch("/admin/users/{user_id}", response_model=AdminUserOut, summary="Change a user's role (admin)")
async def change_role(
    creds: IdentityDep,
    user_id: uuid.UUID,
    body: RoleChange,
    admin: Principal = Depends(admin_only),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> AdminUserOut:
    return await administration.change_role(runtime, creds, admin, user_id, body.role, info)


@router.post("/admin/users/{user_id}/lock", response_model=AdminUserOut, summary="Lock an account (admin)")
async def lock_user(
    creds: IdentityDep,
    user_id: uuid.UUID,
    admin: Principal = Depends(admin_only),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> AdminUserOut:
    """Its sessions end and its tokens are refused at once; sign-in and refresh are refused (403) until unlocked."""
    return await administration.set_locked(runtime, creds, admin, user_id, True, info)


@router.delete("/admin/users/{user_id}/lock", response_model=AdminUserOut, summary="Unlock an account (admin)")
async def unlock_user(
    creds: IdentityDep,
    user_id: uuid.UUID,
    admin: Principal = Depends(admin_only),
    runtime: Runtime = Depends(get_runtime),
    info: service.RequestInfo = Depends(request_info),
) -> AdminUserOut:
    return await administration.set_locked(runtime, creds, admin, user_id, False, info)


@router.get("/admin/audit-log", response_model=Page[AuditEntryOut], summary="Audit entries, newest first (admin)")
async def audit_log(
    actor_id: uuid.UUID | None = None,
    action: str | None = Query(None, max_length=64),
    resource_type: str | None = Query(None, max_length=32),
    resource_id: str | None = Query(None, max_length=64),
    result: Literal["success", "failure", "denied", "duplicate", "mfa_required"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = Query(None, ge=1),
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(admin_only),
    runtime: Runtime = Depends(get_runtime),
) -> dict:
    return await administration.audit_log(
        runtime,
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        result=result,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@router.get("/admin/audit-log/verify", response_model=AuditChainStatus, summary="Check the audit hash chain (admin)")
async def verify_audit_log(_: Principal = Depends(admin_only), runtime: Runtime = Depends(get_runtime)) -> dict:
    return await administration.verify_audit_chain(runtime)
