"""HTTP routes of the notifications context: a user's preferences, one-click unsubscribe,
provider delivery receipts, and the admin view of dead deliveries."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from staybook.kernel.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.schemas import Page
from staybook.kernel.security import Principal, current_principal, require_role
from staybook.notifications import delivery as sending
from staybook.notifications import service
from staybook.notifications.bootstrap import NotifierDep
from staybook.notifications.policy import TYPES, read_unsubscribe_token
from staybook.notifications.schemas import (
    DeadDelivery,
    NotificationPreferences,
    NotificationPreferencesUpdate,
    ReplayAccepted,
)

router = APIRouter(tags=["notifications"])

TRANSACTIONAL = sorted(name for name, kind in TYPES.items() if kind.transactional)


@router.get("/me/notification-preferences", response_model=NotificationPreferences)
async def read_preferences(
    principal: Principal = Depends(current_principal), runtime: Runtime = Depends(get_runtime)
) -> NotificationPreferences:
    effective = await service.get_preferences(runtime, principal.user_id)
    return NotificationPreferences(**effective, transactional=TRANSACTIONAL)


@router.put("/me/notification-preferences", response_model=NotificationPreferences)
async def change_preferences(
    body: NotificationPreferencesUpdate,
    principal: Principal = Depends(current_principal),
    runtime: Runtime = Depends(get_runtime),
) -> NotificationPreferences:
    effective = await service.update_preferences(runtime, principal.user_id, body.model_dump())
    return NotificationPreferences(**effective, transactional=TRANSACTIONAL)


@router.post("/notifications/unsubscribe", status_code=204, summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: str = Query(..., max_length=300), runtime: Runtime = Depends(get_runtime)) -> Response:
    signing_key = runtime.settings.secret_key.get_secret_value().encode()
    claim = read_unsubscribe_token(signing_key, token)
    if claim is None:
        raise InvalidInput("The unsubscribe link is not valid.", field="query.token")
    user_id, type_name = claim
    await service.unsubscribe(runtime, uuid.UUID(user_id), type_name)
    return Response(status_code=204)


@router.post("/notifications/receipts", status_code=204, summary="Delivery receipt from the SMS/push provider")
async def delivery_receipt(
    notifier: NotifierDep,
    payload: dict[str, Any] = Body(...),
    authorization: str | None = Header(None),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    expected = runtime.settings.notifications.provider_webhook_token
    if expected is None:
        raise Forbidden("Delivery receipts need notifications.provider_webhook_token to be set")
    if not authorization or not hmac.compare_digest(authorization, f"Bearer {expected.get_secret_value()}"):
        raise Unauthorized("Receipts must carry the provider token")
    try:
        receipt = notifier.provider.parse_receipt(payload)
    except ValueError as error:
        raise InvalidInput(str(error), field="body") from error
    if not await sending.record_receipt(runtime, receipt):
        raise NotFound(f"No sent SMS or push with provider message id {receipt.provider_message_id!r}")
    return Response(status_code=204)


@router.get("/admin/notifications/dead", response_model=Page[DeadDelivery])
async def dead_deliveries(
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    _admin: Principal = Depends(require_role("admin")),
    runtime: Runtime = Depends(get_runtime),
) -> Page[DeadDelivery]:
    rows = await sending.list_dead(runtime, after=cursor, limit=limit)
    items = [DeadDelivery.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, next_cursor=str(rows[-1].id) if len(rows) == limit else None)


@router.post("/admin/notifications/dead/{delivery_id}/replay", status_code=202, response_model=ReplayAccepted)
async def replay_dead_delivery(
    delivery_id: uuid.UUID,
    notifier: NotifierDep,
    _admin: Principal = Depends(require_role("admin")),
) -> ReplayAccepted:
    delivery = await sending.replay_dead(notifier, delivery_id)
    return ReplayAccepted(id=delivery.id, status=delivery.status)
