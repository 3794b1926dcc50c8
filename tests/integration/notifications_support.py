"""Shared by the notification integration tests: events as other contexts publish them, a real
SMTP server (aiosmtpd on a free port) that can be told to refuse, and waiting helpers."""

from __future__ import annotations

import asyncio
import email
import uuid
from dataclasses import dataclass
from datetime import date
from email import policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from bench.harness import free_port
from sqlalchemy import select

from staybook.booking import views as bookings
from staybook.booking.models import Booking
from staybook.identity import bootstrap as identity_bootstrap
from staybook.identity import service as identity
from staybook.identity.models import User
from staybook.kernel.events import EventEnvelope, subject_for
from staybook.kernel.orm import new_id, utcnow
from staybook.notifications.models import Contact, Delivery, DeliveryAttempt
from staybook.notifications.service import RECIPIENT_PURPOSE

# ------------------------------------------------------------------ events as other contexts publish them


@dataclass(frozen=True)
class Published:
    """An event exactly as another context would write it to its outbox (docs/events.md payload)."""

    context: str
    name: str
    payload: dict[str, Any]

    def outbox_row(self) -> dict[str, Any]:
        return {
            "id": new_id(),
            "subject": subject_for(self.context, self.name),
            "event_type": self.name,
            "payload": self.payload,
            "headers": {},
            "created_at": utcnow(),
            "published_at": None,
            "attempts": 0,
        }

    def envelope(self) -> EventEnvelope:
        row = self.outbox_row()
        return EventEnvelope(row["id"], row["subject"], row["event_type"], row["created_at"], row["payload"])


def booking_confirmed(booking: dict[str, Any]) -> Published:
    return Published("booking", "booking.confirmed", {"booking": booking, "payment_id": str(uuid.uuid4())})


def booking_cancelled(booking: dict[str, Any], refund: int = 0) -> Published:
    refund_money = {"amount": refund, "currency": booking["total"]["currency"]}
    return Published(
        "booking", "booking.cancelled", {"booking": booking, "cancelled_by": "guest", "refund": refund_money}
    )


def user_erased(user_id: uuid.UUID) -> Published:
    return Published("identity", "user.erased", {"user_id": str(user_id), "at": utcnow().isoformat()})


def booking_payload(
    *,
    guest_user_id: uuid.UUID,
    host_id: uuid.UUID | None = None,
    email_address: str = "guest@example.org",
    phone: str | None = "+14155552671",
    timezone: str = "America/New_York",
    locale: str = "en",
) -> dict[str, Any]:
    return {
        "booking_id": str(uuid.uuid4()),
        "reference": "SB-" + uuid.uuid4().hex[:6].upper(),
        "status": "confirmed",
        "guest_user_id": str(guest_user_id),
        "guest": {"name": "Ada Guest", "email": email_address, "phone": phone, "locale": locale},
        "host_id": str(host_id or uuid.uuid4()),
        "property": {
            "property_id": str(uuid.uuid4()),
            "name": "Hudson Loft",
            "address": "12 Bank Street",
            "city": "New York",
            "country": "US",
            "timezone": timezone,
            "check_in_time": "16:00",
            "check_out_time": "10:30",
        },
        "room_type": {"room_type_id": str(uuid.uuid4()), "name": "Loft"},
        "check_in": "2027-07-01",
        "check_out": "2027-07-04",
        "nights": 3,
        "units": 1,
        "guests": 2,
        "total": {"amount": 61200, "currency": "USD"},
        "cancellation_policy": "flexible",
    }


def registered(user_id: uuid.UUID, email_address: str, phone: str | None = None, timezone: str = "Europe/Berlin"):
    payload = {
        "user_id": str(user_id),
        "email": email_address,
        "name": "Grace Host",
        "role": "host",
        "locale": "de-DE",
        "timezone": timezone,
        "region": "eu",
        "phone": phone,
    }
    return Published("identity", "user.registered", payload)


# ------------------------------------------------------------------ a real SMTP server


class SmtpRecorder:
    """An aiosmtpd handler: answers `answers` first (e.g. 451s), then `default` (250 unless told)."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.answers: list[str] = []
        self.default = "250 OK"

    async def handle_DATA(self, server, session, envelope):
        answer = self.answers.pop(0) if self.answers else self.default
        if answer.startswith("250"):
            # UTF-8 headers (RFC 6532, sent with SMTPUTF8) are read as UTF-8, not as escaped bytes.
            self.messages.append(email.message_from_string(envelope.content.decode(), policy=policy.default))
        return answer

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture(name="smtp")
def smtp_fixture():
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    recorder.port = controller.port
    yield recorder
    controller.stop()


@pytest.fixture(name="backbone", params=["postgres+redis+nats", "sqlite+in-process"])
def backbone_fixture(request):
    if request.param == "postgres+redis+nats":
        return request.getfixturevalue("production_settings")
    return request.getfixturevalue("sqlite_settings")


def with_notifications(settings, smtp: SmtpRecorder, **overrides):
    notifications = settings.notifications.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "retry_base_seconds": 0.02,
            "retry_max_seconds": 0.1,
            "poll_seconds": 0.2,
            # Equal hours switch quiet hours off, so SMS timing does not depend on the clock.
            "quiet_hours_start": 0,
            "quiet_hours_end": 0,
            **overrides,
        }
    )
    return settings.model_copy(
        update={
            "run_worker_in_process": True,
            "consumer_backoff_seconds": 0.05,
            "notifications": notifications,
            # The test PostgreSQL is shared by parallel runs; a few connections are enough here.
            "database_pool_size": 4,
            "database_max_overflow": 4,
        }
    )


# ------------------------------------------------------------------ helpers


async def eventually(predicate, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def emit(runtime, *events: Published) -> None:
    """Publishes the events as their contexts do: contact data is not in the payload but in the
    owning context's records (a booking's sealed guest, a user's sealed record), which notifications
    asks for. The helpers above put the contact data in the payload; here it moves to those records."""
    async with runtime.db.unit_of_work() as uow:
        for event in events:
            uow.emit(await _as_published(runtime, uow, event))


async def stored(runtime, event: Published) -> Published:
    """The event as published, its contact data stored where its context keeps it (see emit)."""
    async with runtime.db.unit_of_work() as uow:
        return await _as_published(runtime, uow, event)


async def _as_published(runtime, uow, event: Published) -> Published:
    payload = dict(event.payload)
    if isinstance(payload.get("booking"), dict) and "guest" in payload["booking"]:
        booking = dict(payload["booking"])
        await _store_booking(uow, booking, booking.pop("guest"))
        payload["booking"] = booking
    if event.name in ("user.registered", "user.updated") and "email" in payload:
        contact = {key: payload.pop(key, None) for key in ("email", "name", "phone")}
        await _store_user(runtime, uow, payload, contact)
    return Published(event.context, event.name, payload)


async def _store_booking(uow, booking: dict[str, Any], guest: dict[str, Any]) -> None:
    booking_id = uuid.UUID(booking["booking_id"])
    if await uow.session.get(Booking, booking_id) is not None:
        return
    uow.session.add(
        Booking(
            id=booking_id,
            reference=booking["reference"][:12],
            status=booking["status"],
            guest_user_id=uuid.UUID(booking["guest_user_id"]),
            guest=bookings.seal_guest(uow.sealer, guest),
            host_id=uuid.UUID(booking["host_id"]),
            property_id=uuid.UUID(booking["property"]["property_id"]),
            property=booking["property"],
            room_type_id=uuid.UUID(booking["room_type"]["room_type_id"]),
            room_type_name=booking["room_type"]["name"],
            check_in=date.fromisoformat(booking["check_in"]),
            check_out=date.fromisoformat(booking["check_out"]),
            units=booking["units"],
            guests=booking["guests"],
            total_amount=booking["total"]["amount"],
            currency=booking["total"]["currency"],
            nightly_prices=[],
            cancellation_policy=booking["cancellation_policy"],
            expires_at=utcnow(),
        )
    )
    await uow.session.flush()


async def _store_user(runtime, uow, payload: dict[str, Any], contact: dict[str, Any]) -> None:
    user_id = uuid.UUID(payload["user_id"])
    creds = identity_bootstrap.build(runtime)
    user = await uow.session.get(User, user_id)
    if user is None:
        user = User(
            id=user_id,
            email_hash=creds.vault.email_hash(contact["email"]),
            role=payload.get("role", "guest"),
            locale=payload.get("locale", "en"),
            timezone=payload.get("timezone", "UTC"),
            region=payload.get("region", "eu"),
        )
        uow.session.add(user)
    identity.seal_pii(creds, user, contact)
    await uow.session.flush()


async def deliveries(runtime, *where) -> list[Delivery]:
    async with runtime.db.session() as session:
        return list((await session.scalars(select(Delivery).where(*where).order_by(Delivery.id))).all())


async def attempts_of(runtime, delivery_id) -> list[DeliveryAttempt]:
    async with runtime.db.session() as session:
        query = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
        return list((await session.scalars(query.order_by(DeliveryAttempt.attempted_at))).all())


def settled(runtime, *where):
    async def check():
        rows = await deliveries(runtime, *where)
        return rows if rows and all(r.status not in ("pending",) for r in rows) else None

    return check


def sandbox(runtime):
    return runtime.context_deps["notifications"].provider


async def value(result):
    return result


async def settled_count(runtime, count: int):
    """All `count` deliveries exist and none is pending any more."""
    rows = await deliveries(runtime)
    return rows if len(rows) == count and all(r.status != "pending" for r in rows) else None


async def contact_known(runtime, user_id) -> bool:
    async with runtime.db.session() as session:
        return await session.get(Contact, user_id) is not None


def address_of(runtime, delivery: Delivery) -> str | None:
    """The address a delivery goes to (recipients are sealed at rest)."""
    if delivery.recipient is None:
        return None
    return runtime.db.sealer.open(delivery.recipient, RECIPIENT_PURPOSE)["address"]
