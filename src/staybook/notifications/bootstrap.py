"""Builds the notifications context's parts for one process and the events it reacts to.

`lifespan(runtime)` renders every template (a broken one fails start-up), sets up the
mailer and the SMS/push provider and yields the `Notifier`; the composition root hands it
to the subscriptions and jobs here and to routes (`NotifierDep`). Notifications publishes
no events of its own.

Every handler runs in the consumer's unit of work with the kernel inbox, so a redelivered
event records nothing twice; handlers only write rows, the sender job does the network I/O.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import structlog
from fastapi import Depends

from staybook.identity.bootstrap import identity_deps
from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.notifications import service
from staybook.notifications.mail import create_mailer
from staybook.notifications.providers import MessageProvider, SandboxProvider, WebhookProvider
from staybook.notifications.service import Notifier
from staybook.notifications.templates import Templates

log = structlog.get_logger("staybook.notifications")

NotifierDep = Annotated[Notifier, Depends(context_dependency("notifications"))]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[Notifier]:
    settings = runtime.settings.notifications
    templates = Templates()
    rendered = templates.check()
    async with httpx.AsyncClient(timeout=10) as http:
        if settings.provider == "webhook":
            if not settings.provider_webhook_url:
                raise ValueError("notifications.provider is 'webhook' but provider_webhook_url is not set")
            token = settings.provider_webhook_token.get_secret_value() if settings.provider_webhook_token else None
            provider: MessageProvider = WebhookProvider(settings.provider_webhook_url, token, http)
        else:
            provider = SandboxProvider()
        mailer = runtime.adapters.mailer or create_mailer(settings)
        # Identity sits below notifications: its lifespan ran first.
        notifier = Notifier(runtime, templates, mailer, provider, identity_deps(runtime))
        log.info(
            "notifications ready",
            context={"templates": rendered, "mailer": notifier.mailer.kind, "provider": provider.name},
        )
        yield notifier


# Event type -> (guest notice, host notice or None).
BOOKING_NOTICES: dict[str, tuple[str, str | None]] = {
    "booking.held": ("booking_held", None),
    "booking.confirmed": ("booking_confirmed", "host_new_booking"),
    "booking.payment_failed": ("booking_payment_failed", None),
    "booking.expired": ("booking_expired", None),
    "booking.cancelled": ("booking_cancelled", "host_booking_cancelled"),
}


async def on_user_changed(envelope: EventEnvelope, uow: UnitOfWork, notifier: Notifier) -> None:
    await service.remember_contact(uow, envelope.payload)


async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork, notifier: Notifier) -> None:
    await service.erase_user(uow, uuid.UUID(str(envelope.payload["user_id"])))


async def on_user_signed_in(envelope: EventEnvelope, uow: UnitOfWork, notifier: Notifier) -> None:
    await service.notify_user(notifier, uow, envelope, "sign_in_alert", envelope.payload)


async def on_booking_event(envelope: EventEnvelope, uow: UnitOfWork, notifier: Notifier) -> None:
    booking = envelope.payload["booking"]
    guest_notice, host_notice = BOOKING_NOTICES[envelope.type]
    extra = {}
    if envelope.type == "booking.payment_failed":
        extra["reason"] = envelope.payload.get("reason") or "declined"
    if envelope.type == "booking.cancelled":
        extra["cancelled_by"] = envelope.payload.get("cancelled_by") or "guest"
        extra["refund"] = envelope.payload.get("refund") or {"amount": 0, "currency": booking["total"]["currency"]}
    await service.remember_booking(uow, booking)
    await service.notify_guest(notifier, uow, envelope, guest_notice, booking, **extra)
    if host_notice is not None:
        host_extra = {"cancelled_by": extra["cancelled_by"]} if "cancelled_by" in extra else {}
        await service.notify_host(notifier, uow, envelope, host_notice, booking, **host_extra)


async def on_payment_refunded(envelope: EventEnvelope, uow: UnitOfWork, notifier: Notifier) -> None:
    await service.notify_refund(notifier, uow, envelope, envelope.payload)


def _subscription(context: str, event_type: str, handler) -> Subscription:
    # One consumer name per subject: kernel dead-letter replay finds the handler by that name.
    return Subscription(f"notifications.{event_type}", f"staybook.{context}.{event_type}", handler)


SUBSCRIPTIONS = [
    _subscription("identity", "user.registered", on_user_changed),
    _subscription("identity", "user.updated", on_user_changed),
    _subscription("identity", "user.erased", on_user_erased),
    _subscription("identity", "user.signed_in", on_user_signed_in),
    *(_subscription("booking", event_type, on_booking_event) for event_type in BOOKING_NOTICES),
    _subscription("payments", "payment.refunded", on_payment_refunded),
]
