"""Notifications end to end inside one process: events through the outbox and the bus, the
consumer's inbox, the sender job and a real SMTP server (aiosmtpd on a free port)."""

from __future__ import annotations

import asyncio
import email
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar
from sqlalchemy import func, select

from staybook.kernel.consumers import Subscription
from staybook.kernel.events import EventEnvelope, subject_for
from staybook.kernel.models import InboxMessage
from staybook.kernel.orm import new_id, utcnow
from staybook.notifications import events as notification_events
from staybook.notifications.models import Contact, Delivery, DeliveryAttempt
from tests.conftest import bearer

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
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return answer

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    recorder.port = controller.port
    yield recorder
    controller.stop()


@pytest.fixture(params=["postgres+redis+nats", "sqlite+in-process"])
def backbone(request):
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
        update={"run_worker_in_process": True, "consumer_backoff_seconds": 0.05, "notifications": notifications}
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
    async with runtime.db.unit_of_work() as uow:
        for event in events:
            uow.emit(event)


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
    return runtime.extensions["notifications"].provider


# ------------------------------------------------------------------ tests


async def test_confirmed_booking_sends_one_mail_with_text_html_and_stay_calendar(backbone, smtp, client_for):
    settings = with_notifications(backbone, smtp)
    guest = uuid.uuid4()
    booking = booking_payload(guest_user_id=guest, timezone="America/New_York")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, booking_confirmed(booking))
        await eventually(lambda: _value(len(smtp.messages) == 1 and len(sandbox(runtime).sent) == 1))
        rows = await eventually(settled(runtime))

    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["To"].addresses[0].addr_spec == "guest@example.org"
    assert mail["Subject"] == "Booking confirmed: Hudson Loft, Thursday, July 1, 2027"
    assert mail["List-Unsubscribe"] is None  # transactional
    assert mail.get_content_type() == "multipart/mixed"
    alternative = next(part for part in mail.iter_parts() if part.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert "Hudson Loft" in mail.get_body(("plain",)).get_content()
    assert "<strong>confirmed</strong>" in mail.get_body(("html",)).get_content()

    attachment = next(mail.iter_attachments())
    assert attachment.get_filename() == "stay.ics"
    calendar = Calendar.from_ical(attachment.get_content())
    stay = calendar.walk("VEVENT")[0]
    new_york = ZoneInfo("America/New_York")
    assert stay.decoded("dtstart") == datetime(2027, 7, 1, 16, 0, tzinfo=new_york)
    assert stay.decoded("dtend") == datetime(2027, 7, 4, 10, 30, tzinfo=new_york)
    assert stay["dtstart"].params["TZID"] == "America/New_York"
    assert str(stay["location"]) == "12 Bank Street, New York, US"
    assert calendar.walk("VTIMEZONE")[0]["tzid"] == "America/New_York"

    assert {r.channel: r.status for r in rows} == {"email": "sent", "sms": "sent"}
    email_row = next(r for r in rows if r.channel == "email")
    assert email_row.provider_message_id == mail["Message-ID"]
    assert email_row.recipient_hash and "guest@example.org" not in email_row.recipient_hash


async def test_duplicate_event_sends_once(backbone, smtp, client_for):
    settings = with_notifications(backbone, smtp)
    booking = booking_payload(guest_user_id=uuid.uuid4(), phone=None)
    envelope = booking_confirmed(booking).envelope()
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        subscription = next(s for s in notification_events.SUBSCRIPTIONS if s.subject.endswith("booking.confirmed"))
        # The same event delivered twice by the bus: the inbox takes it once.
        assert await runtime.consumers.handle_once(subscription, envelope) is True
        assert await runtime.consumers.handle_once(subscription, envelope) is False
        # And even a handler run twice outside the inbox records one delivery per channel.
        bypass = Subscription("test.no-inbox-" + uuid.uuid4().hex[:6], subscription.subject, subscription.handler)
        await runtime.consumers.handle_once(bypass, envelope)
        await eventually(settled(runtime))
        await eventually(lambda: _value(len(smtp.messages) >= 1))
        rows = await deliveries(runtime)
    assert len(rows) == 1
    assert len(smtp.messages) == 1


async def test_mail_server_answering_4xx_gets_the_mail_after_retries(production_settings, smtp, client_for):
    smtp.answers = ["451 4.3.0 Try again later", "421 4.7.0 Too busy"]
    settings = with_notifications(production_settings, smtp, max_attempts=5)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(
            runtime,
            booking_confirmed(booking_payload(guest_user_id=uuid.uuid4(), phone=None)),
        )
        [row] = await eventually(settled(runtime))
        attempts = await attempts_of(runtime, row.id)
    assert row.status == "sent" and row.attempts == 3
    assert [a.status for a in attempts] == ["temporary-failure", "temporary-failure", "sent"]
    assert "451" in attempts[0].error
    assert len(smtp.messages) == 1


async def test_always_failing_server_dead_letters_and_admin_replay_delivers(production_settings, smtp, client_for):
    smtp.default = "451 4.3.0 Mailbox busy"
    settings = with_notifications(production_settings, smtp, max_attempts=3)
    admin = bearer(settings, "admin")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(
            runtime,
            booking_confirmed(booking_payload(guest_user_id=uuid.uuid4(), phone=None)),
        )
        [row] = await eventually(settled(runtime))
        assert row.status == "dead" and row.attempts == 3

        assert (
            await client.get("/api/v1/admin/notifications/dead", headers=bearer(settings, "guest"))
        ).status_code == 403
        listed = await client.get("/api/v1/admin/notifications/dead", headers=admin)
        assert listed.status_code == 200
        [item] = listed.json()["items"]
        assert item["id"] == str(row.id) and item["attempts"] == 3 and "451" in item["last_error"]

        smtp.default = "250 OK"
        replay = await client.post(f"/api/v1/admin/notifications/dead/{row.id}/replay", headers=admin)
        assert replay.status_code == 202, replay.text
        [row] = await eventually(settled(runtime))
        again = await client.post(f"/api/v1/admin/notifications/dead/{row.id}/replay", headers=admin)
        missing = await client.post(f"/api/v1/admin/notifications/dead/{uuid.uuid4()}/replay", headers=admin)
        assert (await client.get("/api/v1/admin/notifications/dead", headers=admin)).json()["items"] == []
    assert row.status == "sent"
    assert len(smtp.messages) == 1
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert missing.status_code == 404


async def test_invalid_addresses_and_rejections_are_permanent_failures(production_settings, smtp, client_for):
    smtp.default = "550 5.1.1 No such user"
    settings = with_notifications(production_settings, smtp, max_attempts=5)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        invalid = booking_payload(guest_user_id=uuid.uuid4(), email_address="not an address", phone="+4912")
        rejected = booking_payload(guest_user_id=uuid.uuid4(), email_address="gone@example.org", phone="+14155559999")
        await emit(
            runtime,
            booking_confirmed(invalid),
            booking_confirmed(rejected),
        )
        await eventually(lambda: _value(len(sandbox(runtime).sent) == 0))
        rows = await eventually(lambda: _settled_count(runtime, 4))
        attempts = {r.id: await attempts_of(runtime, r.id) for r in rows}
    assert all(r.status == "failed" and r.attempts == 1 for r in rows)
    assert all([a.status for a in attempts[r.id]] == ["permanent-failure"] for r in rows)
    errors = sorted(r.last_error for r in rows)
    assert any("not a valid email address" in e for e in errors)
    assert any("E.164" in e for e in errors)
    assert any("550" in e for e in errors)
    assert any("unreachable number" in e for e in errors)
    assert smtp.messages == []


async def _settled_count(runtime, count: int):
    rows = await deliveries(runtime)
    return rows if len(rows) == count and all(r.status != "pending" for r in rows) else None


async def test_erased_user_gets_nothing_more_and_records_lose_the_address(backbone, smtp, client_for):
    settings = with_notifications(backbone, smtp)
    guest = uuid.uuid4()
    booking = booking_payload(guest_user_id=guest)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, registered(guest, "guest@example.org", "+14155552671", "America/New_York"))
        await emit(runtime, booking_confirmed(booking))
        sent = await eventually(settled(runtime, Delivery.user_id == guest))
        assert {r.recipient for r in sent} == {"guest@example.org", "+14155552671"}
        hashes = {r.recipient_hash for r in sent}

        await emit(runtime, user_erased(guest))
        await eventually(lambda: _handled_subject(runtime, "notifications.user.erased"))
        await emit(runtime, booking_cancelled(booking))
        await eventually(lambda: _handled_subject(runtime, "notifications.booking.cancelled"))
        rows = await deliveries(runtime, Delivery.user_id == guest)
        async with runtime.db.session() as session:
            contact = await session.get(Contact, guest)
    assert len(rows) == 2  # nothing recorded for the cancellation
    assert all(r.recipient is None and r.context == {} for r in rows)
    assert {r.recipient_hash for r in rows} == hashes
    assert contact.erased_at is not None and contact.email is None and contact.phone is None
    assert len(smtp.messages) == 1


async def _handled_subject(runtime, consumer: str) -> bool:
    async with runtime.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(InboxMessage).where(InboxMessage.consumer == consumer)
        )
    return count >= 1


async def _value(value):
    return value
