"""Use cases of the notifications context.

Two halves that never share a transaction with network I/O:

- Event handlers (`events.py`) call `remember_contact`, `erase_user`, `notify_*`: inside the
  consumer's unit of work (with the kernel inbox) they record `pending` deliveries, one per
  channel the recipient can and wants to be reached on, and wake the sender after commit.
- The sender (`JOBS`) claims due deliveries with `FOR UPDATE SKIP LOCKED` and a lease (so
  several workers share the queue and a crashed worker's claims come back), renders and sends
  them outside any transaction, then records each attempt: sent, retried with backoff and
  jitter, failed for good (invalid address, 5xx), or dead after `max_attempts` tries. Admins
  list dead deliveries and replay them.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy import event as orm_event

from staybook.booking import service as bookings
from staybook.identity import service as identity
from staybook.identity.service import Credentials
from staybook.kernel.crypto import Sealer, is_sealed, reseal_column
from staybook.kernel.db import UnitOfWork, insert_on_conflict
from staybook.kernel.errors import InvalidInput
from staybook.kernel.events import EventEnvelope
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.telemetry import current_trace_headers
from staybook.notifications import repository
from staybook.notifications.mail import Mailer
from staybook.notifications.models import BookingGuest, Contact, Delivery, Preference
from staybook.notifications.policy import (
    CHANNELS,
    TYPES,
    channels_of,
    is_enabled,
    recipient_hash,
    resolve_locale,
    unsubscribe_token,
)
from staybook.notifications.providers import (
    MessageProvider,
)
from staybook.notifications.templates import Templates

log = structlog.get_logger("staybook.notifications")


class Notifier:
    """The context's run-time parts: templates, mailer, SMS/push provider, sender wake-up, and
    identity's credentials (they open the sealed contact details of the user written to)."""

    def __init__(
        self,
        runtime: Runtime,
        templates: Templates,
        mailer: Mailer,
        provider: MessageProvider,
        credentials: Credentials,
    ) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.settings = runtime.settings.notifications
        self.templates = templates
        self.mailer = mailer
        self.provider = provider
        self.signing_key = runtime.settings.secret_key.get_secret_value().encode()
        self.wakeup = asyncio.Event()
        # Earliest retry scheduled by the last pass, so short backoffs do not wait a full poll.
        self.next_retry_at: datetime | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def unsubscribe_url(self, user_id: str, type_name: str) -> str:
        token = unsubscribe_token(self.signing_key, user_id, type_name)
        return f"{self.settings.public_base_url.rstrip('/')}/api/v1/notifications/unsubscribe?token={token}"


# ------------------------------------------------------------------ contacts (identity events)


async def remember_contact(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    """Keeps the user's locale and time zone (for quiet hours) and that they exist; the address,
    phone and name stay identity's and are asked for when a delivery is recorded."""
    user_id = uuid.UUID(str(payload["user_id"]))
    contact = await uow.session.get(Contact, user_id)
    if contact is None:
        contact = Contact(user_id=user_id)
        uow.session.add(contact)
    elif contact.erased_at is not None:
        return  # an old event arriving after erasure must not bring the user back
    contact.locale = resolve_locale(payload.get("locale") or contact.locale)
    contact.timezone = payload.get("timezone") or contact.timezone or "UTC"
    contact.updated_at = utcnow()


async def erase_user(uow: UnitOfWork, user_id: uuid.UUID) -> None:
    """Stops all sending to the user and strips addresses and message contents from their
    delivery records; recipient hashes stay so the history still counts."""
    session = uow.session
    contact = await session.get(Contact, user_id)
    if contact is None:
        contact = Contact(user_id=user_id)
        session.add(contact)
    contact.erased_at = contact.updated_at = utcnow()
    await session.execute(
        update(Delivery)
        .where(Delivery.user_id == user_id, Delivery.status == "pending")
        .values(status="suppressed", updated_at=utcnow())
    )
    await session.execute(update(Delivery).where(Delivery.user_id == user_id).values(recipient=None, context={}))
    await session.execute(delete(BookingGuest).where(BookingGuest.guest_user_id == user_id))
    await session.execute(delete(Preference).where(Preference.user_id == user_id))


# ------------------------------------------------------------------ recording deliveries


@dataclass(frozen=True)
class Recipient:
    user_id: uuid.UUID | None
    name: str | None
    email: str | None
    phone: str | None
    locale: str
    timezone: str


async def _contact(uow: UnitOfWork, user_id: Any) -> Contact | None:
    if not user_id:
        return None
    return await uow.session.get(Contact, uuid.UUID(str(user_id)))


async def _account(notifier: Notifier, uow: UnitOfWork, user_id: Any) -> dict:
    """The user's contact details from identity ({} for no user, an unknown or an erased one)."""
    if not user_id:
        return {}
    user = uuid.UUID(str(user_id))
    return await identity.contact_details(notifier.runtime, notifier.credentials, user, uow.session) or {}


async def _booking_guest(uow: UnitOfWork, booking: dict[str, Any]) -> dict:
    """The details the guest gave for this booking, from booking ({} once erased)."""
    return await bookings.guest_details(uow, uuid.UUID(str(booking["booking_id"]))) or {}


async def notify_guest(
    notifier: Notifier, uow: UnitOfWork, envelope: EventEnvelope, type_name: str, booking: dict[str, Any], **extra: Any
) -> int:
    """Records the guest's deliveries of `type_name` about `booking`; returns how many. The address
    is the one given for the booking, else the account's."""
    contact = await _contact(uow, booking.get("guest_user_id"))
    if contact is not None and contact.erased_at is not None:
        return 0
    guest = await _booking_guest(uow, booking)
    account = await _account(notifier, uow, booking.get("guest_user_id")) if not guest.get("email") else {}
    recipient = Recipient(
        user_id=uuid.UUID(str(booking["guest_user_id"])) if booking.get("guest_user_id") else None,
        name=guest.get("name") or account.get("name"),
        email=guest.get("email") or account.get("email"),
        phone=guest.get("phone") or account.get("phone"),
        locale=resolve_locale(guest.get("locale") or (contact.locale if contact else None)),
        timezone=(contact.timezone if contact else None) or booking["property"].get("timezone") or "UTC",
    )
    context = {"booking": booking, **extra}
    return await record_deliveries(notifier, uow, envelope, type_name, recipient, context, guest_name=recipient.name)


async def notify_host(
    notifier: Notifier, uow: UnitOfWork, envelope: EventEnvelope, type_name: str, booking: dict[str, Any], **extra: Any
) -> int:
    """Records the host's deliveries; hosts are reached through their account's details only."""
    contact = await _contact(uow, booking.get("host_id"))
    if contact is None or contact.erased_at is not None:
        log.info("host has no contact record; notice skipped", context={"host_id": str(booking.get("host_id"))})
        return 0
    account = await _account(notifier, uow, contact.user_id)
    recipient = Recipient(
        contact.user_id,
        account.get("name"),
        account.get("email"),
        account.get("phone"),
        contact.locale,
        contact.timezone,
    )
    guest_name = (await _booking_guest(uow, booking)).get("name")
    context = {"booking": booking, **extra}
    return await record_deliveries(notifier, uow, envelope, type_name, recipient, context, guest_name=guest_name)


async def notify_user(
    notifier: Notifier, uow: UnitOfWork, envelope: EventEnvelope, type_name: str, payload: dict[str, Any]
) -> int:
    """Records deliveries to a user named by an identity event (sign-in alerts)."""
    contact = await _contact(uow, payload["user_id"])
    if contact is not None and contact.erased_at is not None:
        return 0
    account = await _account(notifier, uow, payload["user_id"])
    recipient = Recipient(
        user_id=uuid.UUID(str(payload["user_id"])),
        name=account.get("name"),
        email=account.get("email"),
        phone=account.get("phone"),
        locale=resolve_locale(payload.get("locale") or (contact.locale if contact else None)),
        timezone=contact.timezone if contact else "UTC",
    )
    sign_in = {"ip": payload.get("ip") or "?", "user_agent": payload.get("user_agent") or "?", "at": payload["at"]}
    return await record_deliveries(notifier, uow, envelope, type_name, recipient, {"sign_in": sign_in})


async def remember_booking(uow: UnitOfWork, booking: dict[str, Any]) -> None:
    """Keeps the latest booking state so payment events, which name only the booking, reach the guest."""
    booking_id = uuid.UUID(str(booking["booking_id"]))
    guest_user_id = uuid.UUID(str(booking["guest_user_id"])) if booking.get("guest_user_id") else None
    # One upsert: the held and confirmed handlers may run at once (separate consumers) and
    # a read-then-insert raced into a unique violation and a retried transaction.
    await uow.execute(
        repository.REMEMBER_BOOKING, {"booking_id": booking_id, "guest_user_id": guest_user_id, "booking": booking}
    )


async def notify_refund(notifier: Notifier, uow: UnitOfWork, envelope: EventEnvelope, payload: dict[str, Any]) -> int:
    row = await uow.session.get(BookingGuest, uuid.UUID(str(payload["booking_id"])))
    if row is None:
        log.info("refund for a booking not seen here; not notified", context={"booking_id": payload["booking_id"]})
        return 0
    return await notify_guest(notifier, uow, envelope, "payment_refunded", row.booking, refund=payload["amount"])


RECIPIENT_PURPOSE = "notifications.recipient"


async def record_deliveries(
    notifier: Notifier,
    uow: UnitOfWork,
    envelope: EventEnvelope,
    type_name: str,
    recipient: Recipient,
    context: dict[str, Any],
    *,
    guest_name: str | None = None,
) -> int:
    """One pending delivery per channel the type uses, the recipient has an address for and has
    not switched off. A repeated (event, channel, type, recipient) is ignored by the unique key."""
    notification_type = TYPES[type_name]
    choices: dict[str, bool] = {}
    if recipient.user_id is not None:
        rows = await uow.fetch(repository.PREFERENCES_OF_TYPE, {"user_id": recipient.user_id, "type": type_name})
        choices = {row.channel: row.enabled for row in rows}
    addresses = {
        "email": recipient.email,
        "sms": recipient.phone,
        "push": str(recipient.user_id) if recipient.user_id else None,
    }
    now = utcnow()
    # The stored context holds no names or addresses: those are sealed with the recipient and put
    # back into the context when the message is rendered (`personal_context`).
    stored_context = {**context, "timezone": recipient.timezone}
    traceparent = current_trace_headers().get("traceparent")
    if traceparent:  # the send continues the trace of the event that asked for the message
        stored_context["traceparent"] = traceparent
    rows_to_insert = []
    for channel in channels_of(notification_type):
        address = addresses[channel]
        if not address or not is_enabled(notification_type, channel, choices.get(channel)):
            continue
        rows_to_insert.append(
            {
                "id": new_id(),
                "event_id": envelope.id,
                "user_id": recipient.user_id,
                "channel": channel,
                "template": type_name,
                "locale": recipient.locale,
                "recipient": uow.sealer.seal(
                    {"address": address, "recipient_name": recipient.name or "", "guest_name": guest_name},
                    RECIPIENT_PURPOSE,
                ),
                "recipient_hash": recipient_hash(notifier.signing_key, channel, address),
                "context": stored_context,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    if not rows_to_insert:
        return 0
    for row in rows_to_insert:
        await uow.execute(repository.NEW_DELIVERY, row)
    # Wake the sender only once the rows are visible to it.
    orm_event.listen(uow.session.sync_session, "after_commit", lambda _session: notifier.wake(), once=True)
    return len(rows_to_insert)


def personal_context(sealer: Sealer, delivery: Delivery) -> tuple[str | None, dict[str, Any]]:
    """The delivery's address, and its template context with the sealed names put back (a `Delivery`
    row, or the sender's `ClaimedDelivery` of the same fields)."""
    stored = delivery.recipient
    if stored is None or not is_sealed(stored):
        return stored, delivery.context  # erased, or recorded before recipients were sealed
    personal = sealer.open(stored, RECIPIENT_PURPOSE)
    context = {**delivery.context, "recipient_name": personal.get("recipient_name") or ""}
    if isinstance(context.get("booking"), dict):
        context["booking"] = {**context["booking"], "guest": {"name": personal.get("guest_name") or ""}}
    return personal["address"], context


# ------------------------------------------------------------------ preferences


async def get_preferences(runtime: Runtime, user_id: uuid.UUID) -> dict[str, dict[str, bool]]:
    """The effective choice for every channel and type the user can receive."""
    async with runtime.db.session() as session:
        rows = (await session.execute(select(Preference).where(Preference.user_id == user_id))).scalars().all()
    return _effective({(r.channel, r.notification_type): r.enabled for r in rows})


def _effective(explicit: dict[tuple[str, str], bool]) -> dict[str, dict[str, bool]]:
    return {
        channel: {
            name: is_enabled(kind, channel, explicit.get((channel, name)))
            for name, kind in TYPES.items()
            if channel in channels_of(kind)
        }
        for channel in CHANNELS
    }


async def update_preferences(
    runtime: Runtime, user_id: uuid.UUID, changes: dict[str, dict[str, bool]]
) -> dict[str, dict[str, bool]]:
    """Stores explicit choices. Refuses switching off transactional email, or a channel a type
    does not use, with the field path of the offending entry."""
    errors = []
    for channel, choices in changes.items():
        for name, enabled in choices.items():
            kind = TYPES[name]
            if channel not in channels_of(kind):
                errors.append({"field": f"body.{channel}.{name}", "message": f"{name} is not sent by {channel}"})
            elif channel == "email" and kind.transactional and not enabled:
                errors.append(
                    {"field": f"body.{channel}.{name}", "message": f"{name} is transactional mail and stays on"}
                )
    if errors:
        raise InvalidInput("Some preferences cannot be set.", errors=errors)
    async with runtime.db.unit_of_work() as uow:
        now = utcnow()
        rows = [
            {"user_id": user_id, "channel": c, "notification_type": n, "enabled": e, "updated_at": now}
            for c, choices in changes.items()
            for n, e in choices.items()
        ]
        if rows:
            await uow.session.execute(_SET_PREFERENCE, rows)
    return await get_preferences(runtime, user_id)


_SET_PREFERENCE = insert_on_conflict(
    Preference.__table__,
    ("user_id", "channel", "notification_type", "enabled", "updated_at"),
    ("user_id", "channel", "notification_type"),
    update="UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
)


async def unsubscribe(runtime: Runtime, user_id: uuid.UUID, type_name: str) -> None:
    """One-click unsubscribe from a mail's List-Unsubscribe link: email of that type off."""
    if TYPES[type_name].transactional:
        raise InvalidInput("Transactional mail cannot be unsubscribed from.", field="query.token")
    await update_preferences(runtime, user_id, {"email": {type_name: False}})


async def export_personal_data(runtime: Runtime, user_id: uuid.UUID) -> dict:
    """The messages sent to the user and their choices, for their GDPR export."""
    async with runtime.db.replica_session() as session:  # an export may be a moment behind
        rows = (
            await session.scalars(select(Delivery).where(Delivery.user_id == user_id).order_by(Delivery.created_at))
        ).all()
    messages = []
    for row in rows:
        address, _ = personal_context(runtime.db.sealer, row)  # type: ignore[arg-type]
        messages.append(
            {
                "channel": row.channel,
                "notification": row.template,
                "to": address,
                "status": row.status,
                "created_at": row.created_at.isoformat(),
                "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            }
        )
    return {"messages": messages, "preferences": await get_preferences(runtime, user_id)}


async def reseal_personal_data(runtime: Runtime, batch_size: int = 500) -> int:
    """Re-seals recipients sealed under an older master key (a key rotation); returns how many."""
    table = Delivery.__table__
    return await reseal_column(runtime.db, table.c.id, table.c.recipient, RECIPIENT_PURPOSE, batch_size)
