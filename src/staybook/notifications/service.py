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
import contextlib
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Integer, delete, func, select, update
from sqlalchemy import event as orm_event

from staybook.booking import service as bookings
from staybook.identity import service as identity
from staybook.kernel.crypto import Sealer, is_sealed, reseal_column
from staybook.kernel.db import Sql, UnitOfWork, insert_on_conflict, insert_sql
from staybook.kernel.errors import Conflict, InvalidInput, NotFound
from staybook.kernel.events import EventEnvelope
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import PeriodicJob, Runtime
from staybook.kernel.telemetry import current_trace_headers, span_from
from staybook.notifications import metrics
from staybook.notifications.mail import Mailer, compose_email, stay_calendar
from staybook.notifications.models import BookingGuest, Contact, Delivery, DeliveryAttempt, Preference
from staybook.notifications.policy import (
    CHANNELS,
    TYPES,
    channels_of,
    is_enabled,
    quiet_hours_end,
    recipient_hash,
    resolve_locale,
    retry_delay,
    unsubscribe_token,
)
from staybook.notifications.providers import (
    DeliveryFailed,
    DeliveryReceipt,
    MessageProvider,
    PermanentFailure,
)
from staybook.notifications.templates import Templates

log = structlog.get_logger("staybook.notifications")


class Notifier:
    """The context's run-time parts: templates, mailer, SMS/push provider, sender wake-up."""

    def __init__(self, runtime: Runtime, templates: Templates, mailer: Mailer, provider: MessageProvider) -> None:
        self.runtime = runtime
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
    return await identity.contact_details(notifier.runtime, uuid.UUID(str(user_id)), uow.session) or {}


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
    await uow.execute(_REMEMBER_BOOKING, {"booking_id": booking_id, "guest_user_id": guest_user_id, "booking": booking})


# The consumers' statements run on the driver (kernel.db.Sql): the worker runs them for every
# booking event, and a SQLAlchemy execute cost several times the round trip.
_REMEMBER_BOOKING = Sql(
    "INSERT INTO notification_booking_guests (booking_id, guest_user_id, booking)"
    " VALUES (:booking_id, :guest_user_id, :booking) ON CONFLICT (booking_id)"
    " DO UPDATE SET guest_user_id = excluded.guest_user_id, booking = excluded.booking",
    table=BookingGuest.__table__,
)
_PREFERENCES = Sql(
    "SELECT channel, enabled FROM notification_preferences WHERE user_id = :user_id AND notification_type = :type",
    table=Preference.__table__,
    types={"type": Preference.__table__.c.notification_type.type},
    returns=[Preference.__table__.c.channel, Preference.__table__.c.enabled],
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
        rows = await uow.fetch(_PREFERENCES, {"user_id": recipient.user_id, "type": type_name})
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
        await uow.execute(_NEW_DELIVERY, row)
    # Wake the sender only once the rows are visible to it.
    orm_event.listen(uow.session.sync_session, "after_commit", lambda _session: notifier.wake(), once=True)
    return len(rows_to_insert)


_DELIVERY_COLUMNS = (
    "id", "event_id", "user_id", "channel", "template", "locale", "recipient", "recipient_hash", "context",
    "status", "attempts", "next_attempt_at", "created_at", "updated_at",
)  # fmt: skip
_NEW_DELIVERY = Sql(
    insert_sql(Delivery.__table__, _DELIVERY_COLUMNS)
    + " ON CONFLICT (event_id, channel, template, recipient_hash) DO NOTHING",
    table=Delivery.__table__,
)


# ------------------------------------------------------------------ sending


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    user_id: uuid.UUID | None
    channel: str
    template: str
    locale: str
    recipient: str | None
    recipient_hash: str
    context: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    delivery: ClaimedDelivery
    # sent | temporary | permanent | deferred
    kind: str
    provider_message_id: str | None = None
    error: str | None = None
    deferred_until: datetime | None = None


_DELIVERIES = Delivery.__table__
_CLAIMED_COLUMNS = tuple(field.name for field in dataclasses.fields(ClaimedDelivery))
# Claim in one statement: the due rows, locked and skipped by other senders, get their due time
# pushed out by the lease. A sender whose snapshot still saw them due re-checks the condition on
# the updated row after the lock (READ COMMITTED), so no delivery is claimed twice.
_CLAIM = Sql(
    "UPDATE notification_deliveries SET next_attempt_at = :lease_until WHERE id IN ("
    "SELECT id FROM notification_deliveries WHERE status = 'pending' AND next_attempt_at <= :now"
    " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    f" RETURNING {', '.join(_CLAIMED_COLUMNS)}",
    table=_DELIVERIES,
    types={
        "lease_until": _DELIVERIES.c.next_attempt_at.type,
        "now": _DELIVERIES.c.next_attempt_at.type,
        "limit": Integer(),
    },
    returns=[_DELIVERIES.c[name] for name in _CLAIMED_COLUMNS],
)
# An attempt's result, guarded by status: an erasure or replay that happened meanwhile wins.
# The COALESCEs leave a column as it is where this outcome does not set it.
_RECORD = Sql(
    "UPDATE notification_deliveries SET status = :status, attempts = :attempts, updated_at = :updated_at,"
    " last_error = :last_error, sent_at = COALESCE(:sent_at, sent_at),"
    " provider_message_id = COALESCE(:provider_message_id, provider_message_id),"
    " next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at)"
    " WHERE id = :id AND status = 'pending'",
    table=_DELIVERIES,
)
_DEFER = Sql(
    "UPDATE notification_deliveries SET next_attempt_at = :next_attempt_at, updated_at = :updated_at"
    " WHERE id = :id AND status = 'pending'",
    table=_DELIVERIES,
)
_ATTEMPT_COLUMNS = (
    "id", "delivery_id", "number", "channel", "recipient_hash", "template", "status", "provider_message_id", "error",
    "attempted_at",
)  # fmt: skip
_INSERT_ATTEMPT = Sql(
    insert_sql(DeliveryAttempt.__table__, _ATTEMPT_COLUMNS),
    table=DeliveryAttempt.__table__,
)


async def claim_due(notifier: Notifier, limit: int) -> list[ClaimedDelivery]:
    """Takes up to `limit` due deliveries for this worker by pushing their due time out by the
    claim lease; the row locks last only for this one statement, never during sending."""
    now = utcnow()
    lease_until = now + timedelta(seconds=notifier.settings.claim_seconds)
    async with notifier.runtime.db.transaction(autocommit=True) as uow:
        rows = await uow.fetch(_CLAIM, {"lease_until": lease_until, "now": now, "limit": limit})
    rows.sort(key=lambda r: r.created_at)  # RETURNING has no order; send in the order they came
    return [ClaimedDelivery(**{name: row[name] for name in _CLAIMED_COLUMNS}) for row in rows]


def personal_context(sealer: Sealer, delivery: ClaimedDelivery) -> tuple[str | None, dict[str, Any]]:
    """The delivery's address, and its template context with the sealed names put back."""
    stored = delivery.recipient
    if stored is None or not is_sealed(stored):
        return stored, delivery.context  # erased, or recorded before recipients were sealed
    personal = sealer.open(stored, RECIPIENT_PURPOSE)
    context = {**delivery.context, "recipient_name": personal.get("recipient_name") or ""}
    if isinstance(context.get("booking"), dict):
        context["booking"] = {**context["booking"], "guest": {"name": personal.get("guest_name") or ""}}
    return personal["address"], context


async def attempt_delivery(notifier: Notifier, delivery: ClaimedDelivery) -> Outcome:
    """Renders and sends one delivery; every failure becomes an Outcome, never an exception."""
    notification_type = TYPES[delivery.template]
    with span_from(
        f"send {delivery.channel} {delivery.template}", delivery.context.get("traceparent"), "PRODUCER"
    ) as span:
        outcome = await _attempt(notifier, delivery, notification_type)
        if span is not None and outcome.kind != "sent":
            span.set_attribute("staybook.delivery.outcome", outcome.kind)
        return outcome


async def _attempt(notifier: Notifier, delivery: ClaimedDelivery, notification_type) -> Outcome:
    try:
        address, context = personal_context(notifier.runtime.db.sealer, delivery)
        if address is None:
            raise PermanentFailure("recipient address was erased")
        if delivery.channel == "sms" and not notification_type.urgent:
            s = notifier.settings
            until = quiet_hours_end(utcnow(), context.get("timezone"), s.quiet_hours_start, s.quiet_hours_end)
            if until is not None:
                return Outcome(delivery, "deferred", deferred_until=until)
        if delivery.channel == "email":
            unsubscribe = None
            if not notification_type.transactional and delivery.user_id is not None:
                unsubscribe = notifier.unsubscribe_url(str(delivery.user_id), delivery.template)
            rendered = notifier.templates.render(
                delivery.template, delivery.locale, context, unsubscribe_url=unsubscribe
            )
            calendar = stay_calendar(context["booking"]) if delivery.template == "booking_confirmed" else None
            mail = compose_email(
                rendered,
                sender=notifier.settings.from_address,
                recipient=address,
                recipient_name=context.get("recipient_name"),
                unsubscribe_url=unsubscribe,
                calendar=calendar,
            )
            provider_id = await notifier.mailer.send(mail)
        else:
            rendered = notifier.templates.render(delivery.template, delivery.locale, context)
            provider_id = await notifier.provider.send(
                delivery.channel, address, rendered.short or rendered.subject, str(delivery.id)
            )
    except DeliveryFailed as failure:
        return Outcome(delivery, "permanent" if failure.permanent else "temporary", error=str(failure))
    except Exception as error:
        log.exception(
            "unexpected error sending a notification",
            error_type=type(error).__name__,
            context={"delivery_id": str(delivery.id), "channel": delivery.channel},
        )
        return Outcome(delivery, "temporary", error=f"{type(error).__name__}: {error}")
    return Outcome(delivery, "sent", provider_message_id=provider_id)


async def record_outcomes(notifier: Notifier, outcomes: list[Outcome]) -> None:
    """Writes every attempt and moves each delivery on: sent, retry later, failed or dead. All of
    a pass's writes go out as one statement (deferred writes: each touches its own rows)."""
    settings = notifier.settings
    now = utcnow()
    soonest: datetime | None = None
    async with notifier.runtime.db.transaction() as uow:
        for outcome in outcomes:
            delivery = outcome.delivery
            if outcome.kind == "deferred":
                uow.defer(_DEFER, {"id": delivery.id, "next_attempt_at": outcome.deferred_until, "updated_at": now})
                continue
            number = delivery.attempts + 1
            values: dict[str, Any] = {
                "id": delivery.id,
                "status": "pending",
                "attempts": number,
                "updated_at": now,
                "last_error": outcome.error,
                "sent_at": None,
                "provider_message_id": None,
                "next_attempt_at": None,
            }
            if outcome.kind == "sent":
                values.update(status="sent", sent_at=now, provider_message_id=outcome.provider_message_id)
                metrics.SENT.labels(delivery.channel).inc()
                metrics.DELIVERY_LATENCY.labels(delivery.channel).observe((now - delivery.created_at).total_seconds())
            elif outcome.kind == "permanent":
                values.update(status="failed")
                metrics.FAILED.labels(delivery.channel, "permanent").inc()
                # Not retried, so an operator must hear of it: the log, and the admins' dead letters.
                log.warning(
                    "notification failed permanently",
                    context={"delivery_id": str(delivery.id), "channel": delivery.channel, "error": outcome.error},
                )
            elif number >= settings.max_attempts:
                values.update(status="dead")
                metrics.FAILED.labels(delivery.channel, "temporary").inc()
                metrics.DEAD.labels(delivery.channel).inc()
                log.warning(
                    "notification dead-lettered",
                    context={"delivery_id": str(delivery.id), "attempts": number, "error": outcome.error},
                )
            else:
                due = now + timedelta(
                    seconds=retry_delay(number, settings.retry_base_seconds, settings.retry_max_seconds)
                )
                values.update(next_attempt_at=due)
                soonest = due if soonest is None else min(soonest, due)
                metrics.FAILED.labels(delivery.channel, "temporary").inc()
                metrics.RETRIED.labels(delivery.channel).inc()
            uow.defer(_RECORD, values)
            uow.defer(
                _INSERT_ATTEMPT,
                {
                    "id": new_id(),
                    "delivery_id": delivery.id,
                    "number": number,
                    "channel": delivery.channel,
                    "recipient_hash": delivery.recipient_hash,
                    "template": delivery.template,
                    "status": {"sent": "sent", "permanent": "permanent-failure"}.get(outcome.kind, "temporary-failure"),
                    "provider_message_id": outcome.provider_message_id,
                    "error": outcome.error[:4000] if outcome.error else None,
                    "attempted_at": now,
                },
            )
    if soonest is not None:
        notifier.next_retry_at = soonest if notifier.next_retry_at is None else min(notifier.next_retry_at, soonest)


async def send_due(notifier: Notifier) -> int:
    """One pass of the sender: claim a batch, send it concurrently, record the outcomes."""
    claimed = await claim_due(notifier, notifier.settings.batch_size)
    if not claimed:
        return 0
    gate = asyncio.Semaphore(notifier.settings.concurrency)

    async def attempt(delivery: ClaimedDelivery) -> Outcome:
        async with gate:
            return await attempt_delivery(notifier, delivery)

    outcomes = await asyncio.gather(*(attempt(d) for d in claimed))
    await record_outcomes(notifier, list(outcomes))
    return len(claimed)


async def run_sender(runtime: Runtime, notifier: Notifier) -> None:
    """The sender job: sends until the queue has nothing due, then sleeps until woken by a new
    delivery, the next scheduled retry, or the poll interval, whichever comes first."""
    notifier.wakeup.clear()
    while await send_due(notifier) == notifier.settings.batch_size:
        pass
    timeout = notifier.settings.poll_seconds
    if notifier.next_retry_at is not None:
        timeout = max(0.0, min(timeout, (notifier.next_retry_at - utcnow()).total_seconds()))
        notifier.next_retry_at = None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(notifier.wakeup.wait(), timeout=timeout)


async def measure_queue(runtime: Runtime) -> int:
    """Sets the queue-depth gauge to the number of pending deliveries."""
    async with runtime.db.session() as session:
        depth = await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
    metrics.QUEUE_DEPTH.set(depth or 0)
    return depth or 0


JOBS = [
    # Interval 0: run_sender does its own waiting (for a wake-up or the poll interval).
    PeriodicJob("notifications.send", 0, run_sender),
    PeriodicJob("notifications.queue-depth", 15, lambda runtime, _: measure_queue(runtime)),
]


async def record_receipt(runtime: Runtime, receipt: DeliveryReceipt) -> bool:
    """Applies a provider's delivery receipt to the SMS or push it names; False if none matches.
    A failed receipt turns a sent delivery into a permanent failure (the carrier gave up)."""
    now = utcnow()
    if receipt.status == "delivered":
        values: dict[str, Any] = {"delivered_at": now, "updated_at": now}
    else:
        values = {"status": "failed", "last_error": f"receipt: {receipt.error or 'failed'}"[:4000], "updated_at": now}
    async with runtime.db.unit_of_work() as uow:
        result = await uow.session.execute(
            update(Delivery)
            .where(
                Delivery.provider_message_id == receipt.provider_message_id,
                Delivery.channel.in_(("sms", "push")),
                Delivery.status == "sent",
            )
            .values(**values)
            .returning(Delivery.channel)
        )
        channels = list(result.scalars())
    if receipt.status == "failed":
        for channel in channels:
            metrics.FAILED.labels(channel, "receipt").inc()
    return bool(channels)


# ------------------------------------------------------------------ dead letters (admin)


UNDELIVERED = ("dead", "failed")


async def list_dead(runtime: Runtime, *, after: uuid.UUID | None, limit: int) -> list[Delivery]:
    """Deliveries that will not be attempted again, oldest first, `limit` after the cursor id: dead
    (attempts exhausted) and failed (refused for good: an invalid address, a provider's verdict)."""
    query = select(Delivery).where(Delivery.status.in_(UNDELIVERED)).order_by(Delivery.id).limit(limit)
    if after is not None:
        query = query.where(Delivery.id > after)
    async with runtime.db.session() as session:
        return list((await session.scalars(query)).all())


async def replay_dead(notifier: Notifier, delivery_id: uuid.UUID) -> Delivery:
    """Puts a dead delivery back in the queue with a fresh set of attempts and wakes the sender."""
    async with notifier.runtime.db.unit_of_work() as uow:
        delivery = await uow.session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise NotFound(f"No delivery {delivery_id}")
        if delivery.status not in UNDELIVERED:
            raise Conflict(f"Delivery {delivery_id} is {delivery.status}, not dead", status_now=delivery.status)
        if delivery.recipient is None:
            raise Conflict("The recipient has been erased; the delivery cannot be replayed")
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = delivery.updated_at = utcnow()
    notifier.wake()
    return delivery


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
