"""Notifications end to end inside one process: events through the outbox and the bus, the
consumer's inbox, the sender job and a real SMTP server (aiosmtpd on a free port)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import func, select

from staybook.kernel.models import InboxMessage
from staybook.notifications.models import Contact, Delivery
from tests.conftest import bearer
from tests.integration.notifications_support import (
    address_of,
    attempts_of,
    backbone_fixture,  # noqa: F401  (fixture)
    booking_cancelled,
    booking_confirmed,
    booking_payload,
    contact_known,
    deliveries,
    emit,
    eventually,
    registered,
    sandbox,
    settled,
    settled_count,
    smtp_fixture,  # noqa: F401  (fixture)
    stored,
    user_erased,
    value,
    with_notifications,
)


async def test_confirmed_booking_sends_one_mail_with_text_html_and_stay_calendar(backbone, smtp, client_for):
    settings = with_notifications(backbone, smtp)
    guest = uuid.uuid4()
    booking = booking_payload(guest_user_id=guest, timezone="America/New_York")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, booking_confirmed(booking))
        await eventually(lambda: value(len(smtp.messages) == 1 and len(sandbox(runtime).sent) == 1))
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
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        envelope = (await stored(runtime, booking_confirmed(booking))).envelope()
        subscription = next(s for s in runtime.wiring.subscriptions if s.subject.endswith("booking.confirmed"))
        # The same event delivered twice by the bus: the inbox takes it once.
        assert await runtime.consumers.handle_once(subscription, envelope) is True
        assert await runtime.consumers.handle_once(subscription, envelope) is False
        # And even a handler run twice outside the inbox records one delivery per channel.
        bypass = dataclasses.replace(subscription, consumer="test.no-inbox-" + uuid.uuid4().hex[:6])
        await runtime.consumers.handle_once(bypass, envelope)
        await eventually(settled(runtime))
        await eventually(lambda: value(len(smtp.messages) >= 1))
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
        await eventually(lambda: value(len(sandbox(runtime).sent) == 0))
        rows = await eventually(lambda: settled_count(runtime, 4))
        attempts = {r.id: await attempts_of(runtime, r.id) for r in rows}
    assert all(r.status == "failed" and r.attempts == 1 for r in rows)
    assert all([a.status for a in attempts[r.id]] == ["permanent-failure"] for r in rows)
    errors = sorted(r.last_error for r in rows)
    assert any("not a valid email address" in e for e in errors)
    assert any("E.164" in e for e in errors)
    assert any("550" in e for e in errors)
    assert any("unreachable number" in e for e in errors)
    assert smtp.messages == []


async def test_erased_user_gets_nothing_more_and_records_lose_the_address(backbone, smtp, client_for):
    settings = with_notifications(backbone, smtp)
    guest = uuid.uuid4()
    booking = booking_payload(guest_user_id=guest)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, registered(guest, "guest@example.org", "+14155552671", "America/New_York"))
        await emit(runtime, booking_confirmed(booking))
        sent = await eventually(settled(runtime, Delivery.user_id == guest))
        assert {address_of(runtime, r) for r in sent} == {"guest@example.org", "+14155552671"}
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
    assert contact.erased_at is not None and not {"email", "phone", "name"} & set(Contact.__table__.columns.keys())
    assert len(smtp.messages) == 1


async def _handled_subject(runtime, consumer: str) -> bool:
    async with runtime.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(InboxMessage).where(InboxMessage.consumer == consumer)
        )
    return count >= 1


async def test_sms_waits_for_the_end_of_quiet_hours_while_mail_goes_out(sqlite_settings, smtp, client_for):
    now = datetime.now(ZoneInfo("UTC"))
    # Quiet from this hour for two hours (UTC user): "now" is inside even if the hour turns meanwhile.
    start, end = now.hour, (now.hour + 2) % 24
    settings = with_notifications(sqlite_settings, smtp, quiet_hours_start=start, quiet_hours_end=end)
    guest = uuid.uuid4()
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, registered(guest, "guest@example.org", "+14155552671", "UTC"))
        # The guest's own time zone decides, so the contact must be known before the booking.
        await eventually(lambda: contact_known(runtime, guest))
        await emit(runtime, booking_confirmed(booking_payload(guest_user_id=guest)))
        await eventually(lambda: value(len(smtp.messages) == 1))
        sms = await eventually(lambda: _deferred_sms(runtime, now))
        attempts = await attempts_of(runtime, sms.id)
        assert sandbox(runtime).sent == []
    assert sms.status == "pending" and sms.attempts == 0 and attempts == []
    assert sms.next_attempt_at.astimezone(ZoneInfo("UTC")).hour == end
    assert sms.next_attempt_at.minute == 0


async def _deferred_sms(runtime, now):
    [sms] = await deliveries(runtime, Delivery.channel == "sms")
    # Deferred means rescheduled to a whole hour at least an hour away, not merely claimed (lease).
    return sms if (sms.next_attempt_at - now).total_seconds() > 3600 and sms.next_attempt_at.minute == 0 else None


async def test_booking_guest_remembered_by_concurrent_handlers(pg_settings, make_runtime):
    """The held and confirmed handlers run in separate consumers: both remember the booking at
    once without a unique violation (which would cost a failed, retried transaction)."""
    import asyncio

    from staybook.notifications import service as notifications
    from staybook.notifications.models import BookingGuest

    runtime = await make_runtime(pg_settings)
    booking_id, guest = uuid.uuid4(), uuid.uuid4()

    async def remember(status: str) -> None:
        async with runtime.db.unit_of_work() as uow:
            await notifications.remember_booking(
                uow, {"booking_id": str(booking_id), "guest_user_id": str(guest), "status": status}
            )

    await asyncio.gather(*(remember(status) for status in ("held", "confirmed") * 4))
    async with runtime.db.session() as session:
        rows = (await session.scalars(select(BookingGuest))).all()
    assert [(row.booking_id, row.guest_user_id) for row in rows] == [(booking_id, guest)]
    assert rows[0].booking["status"] in {"held", "confirmed"}


async def test_an_internationalised_address_is_delivered_and_an_invalid_one_reaches_the_admins(
    production_settings, smtp, client_for
):
    settings = with_notifications(production_settings, smtp)
    admin = bearer(settings, "admin")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(
            runtime,
            *(
                booking_confirmed(booking_payload(guest_user_id=uuid.uuid4(), email_address=address, phone=None))
                for address in ("josé@example.com", "ada@localhost")
            ),
        )
        rows = await eventually(lambda: settled_count(runtime, 2))
        by_recipient = {address_of(runtime, row): row for row in rows}
        listed = (await client.get("/api/v1/admin/notifications/dead", headers=admin)).json()["items"]
    assert by_recipient["josé@example.com"].status == "sent"
    assert [m["To"].addresses[0].addr_spec for m in smtp.messages] == ["josé@example.com"]
    assert by_recipient["ada@localhost"].status == "failed"
    [undeliverable] = listed
    assert undeliverable["id"] == str(by_recipient["ada@localhost"].id)
    assert undeliverable["status"] == "failed" and "not a valid email address" in undeliverable["last_error"]
