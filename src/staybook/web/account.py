"""Signing in and out, and the account page: profile, password, MFA with a QR code and recovery
codes, sessions, notification preferences, GDPR export and erasure. Each form calls identity (or
notifications) through its service, as the JSON API does."""

from __future__ import annotations

import orjson
import segno
from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import Response

from staybook.identity import privacy as identity_privacy
from staybook.identity import service as identity
from staybook.identity.bootstrap import IdentityDep
from staybook.identity.schemas import LoginRequest, PasswordChange, ProfileUpdate, RegisterRequest
from staybook.identity.service import Credentials
from staybook.kernel.errors import Forbidden, InvalidInput, StaybookError, Unauthorized
from staybook.notifications import service as notifications
from staybook.web.rendering import WebRoute, page_state, redirect, render
from staybook.web.schemas import CodeForm, LoginForm, PasswordForm, ProfileForm, RegisterForm, parse_form
from staybook.web.session import MFA_COOKIE, request_info

router = APIRouter(include_in_schema=False, route_class=WebRoute)


def local_target(target: str | None) -> str:
    """Only a path of this site: `next=https://evil.example` or `//evil.example` goes home instead."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _principal(request: Request):
    _, session, _ = page_state(request)
    if session.principal is None:
        raise Unauthorized("Please sign in to continue.")
    return session.principal


# --------------------------------------------------------------------------- sign in and out


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", next=local_target(request.query_params.get("next")), problem=None)


@router.post("/login")
async def login(request: Request, creds: IdentityDep) -> Response:
    runtime, session, _ = page_state(request)
    form = parse_form(LoginForm, await request.form())
    target = local_target(form.next)
    try:
        answer = await identity.login(
            runtime, creds, LoginRequest(email=form.email, password=form.password), request_info(request)
        )
    except (Unauthorized, Forbidden) as error:  # Forbidden: a locked account
        return render(request, "login.html", status=error.status, next=target, problem=error.detail, email=form.email)
    if answer.get("mfa_required"):
        response = render(request, "mfa.html", next=target, problem=None)
        session.cookies[MFA_COOKIE] = (answer["mfa_token"], runtime.settings.identity.mfa_token_ttl_seconds)
        return response
    session.sign_in(runtime, answer)
    return redirect(target)


@router.post("/login/mfa")
async def login_mfa(request: Request, creds: IdentityDep) -> Response:
    runtime, session, _ = page_state(request)
    form_data = await request.form()
    target = local_target(str(form_data.get("next") or "/"))
    mfa_token = request.cookies.get(MFA_COOKIE)
    if not mfa_token:
        return redirect(f"/login?next={target}")
    try:
        form = parse_form(CodeForm, form_data)
        tokens = await identity.verify_mfa(runtime, creds, mfa_token[:2048], form.code, request_info(request))
    except (Unauthorized, Forbidden, InvalidInput) as error:
        return render(request, "mfa.html", status=error.status, next=target, problem=error.detail)
    session.sign_in(runtime, tokens)
    return redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    runtime, session, _ = page_state(request)
    refresh = request.cookies.get("sb_refresh")
    if refresh:
        try:
            await identity.logout(runtime, refresh[:512])
        except StaybookError:
            pass  # an unknown or spent token: the session is over either way
    session.sign_out()
    return redirect("/")


@router.get("/register")
async def register_page(request: Request) -> Response:
    return render(request, "register.html", problem=None, errors=[], values={})


@router.post("/register")
async def register(request: Request, creds: IdentityDep) -> Response:
    runtime, session, locale = page_state(request)
    form = parse_form(RegisterForm, await request.form())
    data = RegisterRequest(email=form.email, password=form.password, name=form.name, role=form.role, locale=locale)
    try:
        await identity.register(runtime, creds, data, request_info(request))
        credentials = LoginRequest(email=form.email, password=form.password)
        session.sign_in(runtime, await identity.login(runtime, creds, credentials, request_info(request)))
    except StaybookError as error:
        values = {"email": form.email, "name": form.name, "role": form.role}
        return render(request, "register.html", status=error.status, problem=error.detail,
                      errors=error.extensions.get("errors") or [], values=values)  # fmt: skip
    return redirect("/account" if form.role == "guest" else "/host")


# --------------------------------------------------------------------------- the account page


async def _account(request: Request, creds: Credentials, status: int = 200, **extra) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    me = await identity.get_me(runtime, creds, principal)
    preferences = await notifications.get_preferences(runtime, principal.user_id)
    context = {"me": me, "preferences": preferences, "notice": None, "problem": None, "totp": None,
               "recovery_codes": None}  # fmt: skip
    context.update(extra)
    return render(request, "account.html", status=status, **context)


@router.get("/account")
async def account(request: Request, creds: IdentityDep) -> Response:
    return await _account(request, creds)


async def _attempt(request: Request, creds: Credentials, action, notice: str) -> Response:
    """Runs one account change; its refusal is shown on the account page next to the form."""
    try:
        await action()
    except Unauthorized:
        raise
    except StaybookError as error:
        return await _account(request, creds, status=error.status, problem=error.detail)
    return await _account(request, creds, notice=notice)


@router.post("/account/profile")
async def update_profile(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    form = parse_form(ProfileForm, await request.form())
    change = ProfileUpdate(name=form.name, locale=form.locale, timezone=form.timezone, phone=form.phone)
    return await _attempt(
        request, creds, lambda: identity.update_me(runtime, creds, principal, change), "Your profile is saved."
    )


@router.post("/account/password")
async def change_password(request: Request, creds: IdentityDep) -> Response:
    runtime, session, _ = page_state(request)
    principal = _principal(request)
    form = parse_form(PasswordForm, await request.form())
    change = PasswordChange(current_password=form.current_password, new_password=form.new_password)

    async def action():
        # Other sessions end; this browser goes on with the new tokens.
        tokens = await identity.change_password(runtime, creds, principal, change, request_info(request))
        session.sign_in(runtime, tokens)

    return await _attempt(request, creds, action, "Your password is changed; other devices are signed out.")


@router.post("/account/sessions/revoke")
async def sign_out_everywhere(request: Request) -> Response:
    runtime, session, _ = page_state(request)
    principal = _principal(request)
    await identity.sign_out_everywhere(runtime, principal, request_info(request))
    session.sign_out()
    return redirect("/login")


@router.post("/account/mfa/start")
async def start_mfa(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    setup = await identity.start_totp(runtime, creds, principal)
    qr = segno.make(setup["otpauth_uri"], error="m")
    svg = qr.svg_inline(scale=5, dark="#111", light="#fff", title="Authenticator QR code")
    return await _account(request, creds, totp={"secret": setup["secret"], "qr": Markup(svg)})  # noqa: S704 - segno's own SVG


@router.post("/account/mfa/confirm")
async def confirm_mfa(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    form = parse_form(CodeForm, await request.form())
    try:
        codes = await identity.confirm_totp(runtime, creds, principal, form.code, request_info(request))
    except Unauthorized:
        raise
    except StaybookError as error:
        return await _account(request, creds, status=error.status, problem=error.detail)
    return await _account(request, creds, recovery_codes=codes, notice="Two-step sign-in is on.")


@router.post("/account/mfa/disable")
async def disable_mfa(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    form = parse_form(CodeForm, await request.form())
    return await _attempt(
        request,
        creds,
        lambda: identity.disable_totp(runtime, creds, principal, form.code, request_info(request)),
        "Two-step sign-in is off.",
    )


@router.post("/account/preferences")
async def update_preferences(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    form = await request.form()
    current = await notifications.get_preferences(runtime, principal.user_id)
    wanted = set(form.getlist("enabled"))
    changes = {channel: {name: f"{channel}:{name}" in wanted for name in kinds} for channel, kinds in current.items()}
    return await _attempt(
        request,
        creds,
        lambda: notifications.update_preferences(runtime, principal.user_id, changes),
        "Your notification choices are saved.",
    )


@router.get("/account/export")
async def export(request: Request, creds: IdentityDep) -> Response:
    runtime, _, _ = page_state(request)
    principal = _principal(request)
    data = await identity_privacy.export_me(runtime, creds, principal, request_info(request))
    return Response(
        orjson.dumps(data, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"content-disposition": 'attachment; filename="staybook-my-data.json"', "cache-control": "no-store"},
    )


@router.post("/account/delete")
async def erase(request: Request, creds: IdentityDep) -> Response:
    runtime, session, _ = page_state(request)
    principal = _principal(request)
    form = await request.form()
    if form.get("confirm") != "erase":
        problem = "Tick the box to confirm that your account goes for good."
        return await _account(request, creds, status=422, problem=problem)
    await identity_privacy.erase_me(runtime, creds, principal, request_info(request))
    session.sign_out()
    return render(request, "erased.html")
