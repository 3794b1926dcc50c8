"""The admin pages: health of the parts the site runs on, users (role, lock), the audit log with
its chain check, and the dead letters of every durable consumer (and undelivered notifications)
with replay. Each form calls the same service the JSON admin API calls."""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from staybook.identity import admin as identity_admin
from staybook.identity.bootstrap import IdentityDep
from staybook.identity.service import Credentials
from staybook.kernel.api import dead_letter_out
from staybook.kernel.errors import Forbidden, InvalidInput, StaybookError, Unauthorized
from staybook.kernel.security import Principal
from staybook.notifications import delivery as notification_delivery
from staybook.notifications.bootstrap import NotifierDep
from staybook.web.rendering import WebRoute, page_state, redirect, render
from staybook.web.schemas import RoleForm, parse_form
from staybook.web.session import request_info

router = APIRouter(prefix="/admin", include_in_schema=False, route_class=WebRoute)

PAGE_SIZE = 50
AUDIT_RESULTS = ("success", "failure", "denied", "duplicate", "mfa_required")
# What a redirect after a form says (?done=...), so a reload does not send the form again.
DONE = {
    "role": "The role is changed. The user's open sessions carry the new role from their next request.",
    "locked": "The account is locked and its sessions are ended.",
    "unlocked": "The account is unlocked.",
    "replayed": "The event was handled by its consumer.",
    "duplicate": "The consumer had handled this event already; the letter is marked replayed.",
    "requeued": "The notification is queued to be sent again.",
}


def admin(request: Request) -> Principal:
    _, session, _ = page_state(request)
    if session.principal is None:
        raise Unauthorized("Please sign in to continue.")
    if session.principal.role != "admin":
        raise Forbidden("These pages are for the site's administrators.")
    return session.principal


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("This is not a valid id.", field=f"query.{field}") from None


def _notice(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


# --------------------------------------------------------------------------- health


# The parts an operator asks about first; a part this process does not use says what stands in for it.
PARTS = ("database", "redis", "nats", "search")
NOT_USED = {
    "redis": "Not used: this process caches in memory.",
    "nats": "Not used: this process runs the event bus in memory.",
    "search": "Built in: the in-process index is ready when the page is served.",
}


@router.get("")
async def health(request: Request) -> Response:
    admin(request)
    runtime, _, _ = page_state(request)
    measured = {name: (status, ms) for name, status, ms in await runtime.health()}
    checks = [(name, *measured[name]) if name in measured else (name, None, None) for name in PARTS]
    checks += [(name, status, ms) for name, (status, ms) in measured.items() if name not in PARTS]
    consumers = await runtime.dead_letters.consumers()
    return render(
        request,
        "admin/health.html",
        checks=checks,
        not_used=NOT_USED,
        healthy=all(status == "ok" for status, _ in measured.values()),
        waiting=sum(c.waiting for c in consumers),
    )


# --------------------------------------------------------------------------- users


@router.get("/users")
async def users(request: Request, creds: IdentityDep) -> Response:
    admin(request)
    runtime, _, _ = page_state(request)
    query = request.query_params
    filters = {"role": query.get("role", ""), "status": query.get("status", "")}
    if filters["role"] not in ("", "guest", "host", "admin"):
        raise InvalidInput("No such role.", field="query.role")
    if filters["status"] not in ("", "active", "erased"):
        raise InvalidInput("No such status.", field="query.status")
    page = await identity_admin.list_users(
        runtime,
        creds,
        role=filters["role"] or None,
        status=filters["status"] or None,
        cursor=_uuid(query.get("cursor"), "cursor"),
        limit=PAGE_SIZE,
    )
    return render(request, "admin/users.html", page=page, filters=filters, notice=_notice(request), problem=None)


async def _user_action(request: Request, creds: Credentials, user_id: uuid.UUID, done: str, action) -> Response:
    principal = admin(request)
    runtime, _, _ = page_state(request)
    try:
        await action(runtime, principal)
    except (Forbidden, InvalidInput) as error:
        page = await identity_admin.list_users(runtime, creds, role=None, status=None, cursor=None, limit=PAGE_SIZE)
        filters = {"role": "", "status": ""}
        return render(request, "admin/users.html", status=error.status, page=page, filters=filters, notice=None,
                      problem=error.detail)  # fmt: skip
    return redirect(f"/admin/users?done={done}#user-{user_id}")


@router.post("/users/{user_id}/role")
async def change_role(user_id: uuid.UUID, request: Request, creds: IdentityDep) -> Response:
    form = parse_form(RoleForm, await request.form())
    info = request_info(request)
    return await _user_action(
        request,
        creds,
        user_id,
        "role",
        lambda runtime, who: identity_admin.change_role(runtime, creds, who, user_id, form.role, info),
    )


@router.post("/users/{user_id}/lock")
async def lock(user_id: uuid.UUID, request: Request, creds: IdentityDep) -> Response:
    info = request_info(request)
    return await _user_action(
        request,
        creds,
        user_id,
        "locked",
        lambda runtime, who: identity_admin.set_locked(runtime, creds, who, user_id, True, info),
    )


@router.post("/users/{user_id}/unlock")
async def unlock(user_id: uuid.UUID, request: Request, creds: IdentityDep) -> Response:
    info = request_info(request)
    return await _user_action(
        request,
        creds,
        user_id,
        "unlocked",
        lambda runtime, who: identity_admin.set_locked(runtime, creds, who, user_id, False, info),
    )


# --------------------------------------------------------------------------- audit log


def _moment(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("Dates and times are YYYY-MM-DD or YYYY-MM-DDTHH:MM.", field=f"query.{field}") from None


@router.get("/audit")
async def audit(request: Request) -> Response:
    admin(request)
    runtime, _, _ = page_state(request)
    query = request.query_params
    filters = {name: query.get(name, "")[:64] for name in ("action", "result", "since", "until")}
    if filters["result"] not in ("", *AUDIT_RESULTS):
        raise InvalidInput("No such result.", field="query.result")
    cursor = query.get("cursor", "")
    if cursor and not cursor.isdigit():
        raise InvalidInput("This is not a valid page.", field="query.cursor")
    page = await identity_admin.audit_log(
        runtime,
        action=filters["action"] or None,
        result=filters["result"] or None,
        since=_moment(filters["since"], "since"),
        until=_moment(filters["until"], "until"),
        cursor=int(cursor) if cursor else None,
        limit=PAGE_SIZE,
    )
    chain = await identity_admin.verify_audit_chain(runtime) if query.get("verify") == "1" else None
    return render(request, "admin/audit.html", page=page, filters=filters, results=AUDIT_RESULTS, chain=chain)


@router.get("/audit/verify")
async def verify_chain(request: Request) -> Response:
    """The chain check alone: the fragment htmx puts beside the button (or, without scripts, the log page with it)."""
    admin(request)
    runtime, _, _ = page_state(request)
    if request.headers.get("hx-request") != "true":
        return redirect("/admin/audit?verify=1#chain")
    return render(request, "admin/_chain.html", chain=await identity_admin.verify_audit_chain(runtime))


# --------------------------------------------------------------------------- dead letters


@router.get("/dead-letters")
async def dead_letters(request: Request) -> Response:
    admin(request)
    return await _dead_letters_page(request, notice=_notice(request))


async def _dead_letters_page(request: Request, *, status: int = 200, notice: str | None = None,
                             problem: StaybookError | None = None) -> Response:  # fmt: skip
    runtime, _, _ = page_state(request)
    query = request.query_params
    consumer = query.get("consumer", "")[:120]
    state = query.get("state", "waiting")
    if state not in ("waiting", "replayed"):
        raise InvalidInput("The state is waiting or replayed.", field="query.state")
    consumers = await runtime.dead_letters.consumers()
    rows = await runtime.dead_letters.find(
        consumer=consumer or None, replayed=state == "replayed", after=_uuid(query.get("cursor"), "cursor"),
        limit=PAGE_SIZE,
    )  # fmt: skip
    undelivered = await notification_delivery.list_dead(runtime, after=None, limit=PAGE_SIZE)
    return render(
        request,
        "admin/dead_letters.html",
        status=status,
        consumers=consumers,
        letters=[dead_letter_out(row) for row in rows],
        next_cursor=str(rows[-1].id) if len(rows) == PAGE_SIZE else None,
        filters={"consumer": consumer, "state": state},
        undelivered=undelivered,
        notice=notice,
        problem=problem.detail if problem else None,
    )


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay(dead_letter_id: uuid.UUID, request: Request) -> Response:
    admin(request)
    runtime, _, _ = page_state(request)
    try:
        outcome = await runtime.dead_letters.replay(dead_letter_id)
    except StaybookError as error:
        return await _dead_letters_page(request, status=error.status, problem=error)
    done = "replayed" if outcome.handled else "duplicate"
    return redirect("/admin/dead-letters?" + urlencode({"consumer": outcome.dead_letter.consumer, "done": done}))


@router.post("/notifications/{delivery_id}/replay")
async def replay_notification(delivery_id: uuid.UUID, request: Request, notifier: NotifierDep) -> Response:
    admin(request)
    try:
        await notification_delivery.replay_dead(notifier, delivery_id)
    except StaybookError as error:
        return await _dead_letters_page(request, status=error.status, problem=error)
    return redirect("/admin/dead-letters?done=requeued#undelivered")
