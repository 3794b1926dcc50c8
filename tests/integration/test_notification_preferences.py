"""Preferences over HTTP, their effect on what is sent, one-click unsubscribe, host notices,
refunds, the webhook provider against a real HTTP gateway, and claims shared by workers."""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import insert, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from staybook.identity import bootstrap as identity_bootstrap
from staybook.kernel.orm import new_id, utcnow
from staybook.notifications.delivery import claim_due, send_due
from staybook.notifications.mail import MailSink
from staybook.notifications.models import Delivery, DeliveryAttempt
from staybook.notifications.previews import SAMPLES
from staybook.notifications.providers import PermanentFailure, SandboxProvider, TemporaryFailure, WebhookProvider
from staybook.notifications.service import Notifier
from staybook.notifications.templates import Templates
from tests.conftest import bearer
from tests.integration.notifications_support import (
    Published,
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
    value,
    with_notifications,
)

PREFERENCES = "/api/v1/me/notification-preferences"


async def test_preferences_api_defaults_changes_and_bad_input(sqlite_settings, client_for):
    user = uuid.uuid4()
    auth = bearer(sqlite_settings, "guest", user)
    async with client_for(sqlite_settings) as client:
        assert (await client.get(PREFERENCES)).status_code == 401
        defaults = (await client.get(PREFERENCES, headers=auth)).json()
        assert defaults["email"]["booking_confirmed"] is True
        assert defaults["sms"]["booking_confirmed"] is True and defaults["sms"]["booking_held"] is False
        assert defaults["push"]["sign_in_alert"] is False
        assert "payment_refunded" not in defaults["sms"]  # email-only type
        assert "booking_confirmed" in defaults["transactional"]

        changed = await client.put(
            PREFERENCES, headers=auth, json={"email": {"host_new_booking": False}, "push": {"booking_confirmed": True}}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["email"]["host_new_booking"] is False
        assert changed.json()["push"]["booking_confirmed"] is True
        assert (await client.get(PREFERENCES, headers=auth)).json() == changed.json()
        other_user = (await client.get(PREFERENCES, headers=bearer(sqlite_settings, "guest"))).json()
        assert other_user["email"]["host_new_booking"] is True

        transactional = await client.put(PREFERENCES, headers=auth, json={"email": {"booking_confirmed": False}})
        unknown_type = await client.put(PREFERENCES, headers=auth, json={"email": {"newsletter": False}})
        unknown_channel = await client.put(PREFERENCES, headers=auth, json={"fax": {"booking_confirmed": True}})
        email_only = await client.put(PREFERENCES, headers=auth, json={"sms": {"payment_refunded": True}})
        not_bool = await client.put(PREFERENCES, headers=auth, json={"sms": {"booking_held": "sometimes"}})
        malformed = await client.put(
            PREFERENCES, headers={**auth, "Content-Type": "application/json"}, content=b"{email"
        )
        after = (await client.get(PREFERENCES, headers=auth)).json()

    for response in (transactional, unknown_type, unknown_channel, email_only, not_bool):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert transactional.json()["errors"][0]["field"] == "body.email.booking_confirmed"
    assert unknown_type.json()["errors"][0]["field"].startswith("body.email.newsletter")
    assert unknown_channel.json()["errors"][0]["field"] == "body.fax"
    assert email_only.json()["errors"][0]["field"] == "body.sms.payment_refunded"
    assert not_bool.json()["errors"][0]["field"] == "body.sms.booking_held"
    assert malformed.status_code == 400
    assert after == changed.json()  # refused requests changed nothing


async def test_preferences_host_notice_unsubscribe_and_refund(production_settings, smtp, client_for):
    settings = with_notifications(production_settings, smtp)
    guest, host = uuid.uuid4(), uuid.uuid4()
    booking = booking_payload(guest_user_id=guest, host_id=host, phone="+14155552671")
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        # The guest does not want SMS confirmations; the host wants new bookings by SMS.
        guest_choice = await client.put(
            PREFERENCES, headers=bearer(settings, "guest", guest), json={"sms": {"booking_confirmed": False}}
        )
        host_choice = await client.put(
            PREFERENCES, headers=bearer(settings, "host", host), json={"sms": {"host_new_booking": True}}
        )
        assert guest_choice.status_code == host_choice.status_code == 200
        await emit(runtime, registered(host, "host@example.org", "+4915112345678", "Europe/Berlin"))
        await eventually(lambda: contact_known(runtime, host))
        await emit(runtime, booking_confirmed(booking))
        rows = await eventually(lambda: settled_count(runtime, 3))
        assert sorted((r.template, r.channel) for r in rows) == [
            ("booking_confirmed", "email"),
            ("host_new_booking", "email"),
            ("host_new_booking", "sms"),
        ]
        await eventually(lambda: value(len(smtp.messages) == 2))
        [host_mail] = smtp.to("host@example.org")
        assert host_mail["Subject"].startswith("Neue Buchung")  # the host's locale, from user.registered
        assert [m["to"] for m in sandbox(runtime).sent] == ["+4915112345678"]

        link = urlsplit(str(host_mail["List-Unsubscribe"]).strip().strip("<>"))
        assert (await client.post(f"{link.path}?{link.query}")).status_code == 204
        forged = await client.post(f"{link.path}?token=x{link.query.split('=', 1)[1]}")
        host_prefs = (await client.get(PREFERENCES, headers=bearer(settings, "host", host))).json()
        assert smtp.to("guest@example.org")[0]["List-Unsubscribe"] is None

        await emit(runtime, booking_cancelled(booking, refund=30600))
        await emit(
            runtime,
            Published(
                "payments",
                "payment.refunded",
                {
                    "payment_id": str(uuid.uuid4()),
                    "booking_id": booking["booking_id"],
                    "amount": {"amount": 30600, "currency": "USD"},
                    "provider_reference": "sandbox-refund-1",
                },
            ),
        )
        await eventually(lambda: value(len(smtp.to("guest@example.org")) == 3))
        await eventually(settled(runtime))
    assert forged.status_code == 422
    assert host_prefs["email"]["host_new_booking"] is False
    subjects = sorted(m["Subject"] for m in smtp.to("guest@example.org"))
    assert any(s.startswith("Refund of $306.00") for s in subjects)
    assert any(s.startswith("Booking cancelled") for s in subjects)
    # The host's cancellation notice is optional mail they did not switch off; new-booking mail they did.
    assert [m["Subject"] for m in smtp.to("host@example.org")][1].startswith("Buchung")


async def test_webhook_provider_against_a_real_gateway():
    token = "gateway-token"
    received: list[dict] = []

    async def messages(request: Request):
        body = await request.body()
        expected = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        if request.headers.get("x-staybook-signature") != expected:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = await request.json()
        if payload["to"].endswith("5555"):
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if payload["to"].endswith("4444"):
            return JSONResponse({"error": "blocked number"}, status_code=400)
        received.append(payload)
        return JSONResponse({"message_id": f"gw-{len(received)}"})

    gateway = Starlette(routes=[Route("/messages", messages, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as http:
        provider = WebhookProvider("http://gateway.test/messages", token, http)
        assert await provider.send("sms", "+14155552671", "hello", "d-1") == "gw-1"
        assert received == [{"channel": "sms", "to": "+14155552671", "text": "hello", "reference": "d-1"}]
        with pytest.raises(TemporaryFailure, match="503"):
            await provider.send("sms", "+14155555555", "hello", "d-2")
        with pytest.raises(PermanentFailure, match="400"):
            await provider.send("sms", "+14155554444", "hello", "d-3")
        with pytest.raises(PermanentFailure, match="E.164"):
            await provider.send("sms", "12345", "hello", "d-4")
        wrong_key = WebhookProvider("http://gateway.test/messages", "other", http)
        with pytest.raises(PermanentFailure, match="401"):
            await wrong_key.send("sms", "+14155552671", "hello", "d-5")
    unreachable = WebhookProvider("http://127.0.0.1:9/messages", token, httpx.AsyncClient(timeout=2))
    with pytest.raises(TemporaryFailure, match="unreachable"):
        await unreachable.send("sms", "+14155552671", "hello", "d-6")
    await unreachable.client.aclose()
    receipt = provider.parse_receipt({"message_id": "gw-1", "status": "failed", "error": "handset off"})
    assert receipt.status == "failed" and receipt.error == "handset off"


async def add_pending_deliveries(runtime, ids: list[uuid.UUID], *, context: dict) -> None:
    """Booking-confirmed mails to guest<i>@example.org, due now, one per id."""
    now = utcnow()
    rows = [
        {
            "id": delivery_id,
            "event_id": uuid.uuid4(),
            "user_id": None,
            "channel": "email",
            "template": "booking_confirmed",
            "locale": "en",
            "recipient": f"guest{i}@example.org",
            "recipient_hash": f"{i:064d}",
            "context": context,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i, delivery_id in enumerate(ids)
    ]
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(insert(Delivery), rows)


def _notifier(runtime, mail_dir) -> Notifier:
    """A sender of its own, as each worker process has (with identity's credentials to open contacts)."""
    return Notifier(runtime, Templates(), MailSink(mail_dir), SandboxProvider(), identity_bootstrap.build(runtime))


async def test_two_senders_never_claim_the_same_delivery(pg_settings, make_runtime, tmp_path):
    first, second = await make_runtime(pg_settings), await make_runtime(pg_settings)
    await add_pending_deliveries(first, [new_id() for _ in range(60)], context={})
    notifiers = [_notifier(r, tmp_path) for r in (first, second)]
    claims = await asyncio.gather(*(claim_due(n, 20) for n in notifiers for _ in range(2)))
    ids = [c.id for claim in claims for c in claim]
    assert len(ids) == len(set(ids)) == 60
    assert await claim_due(notifiers[0], 20) == []  # all leased


async def test_two_senders_racing_send_each_delivery_once_and_record_it(pg_settings, make_runtime, tmp_path):
    first, second = await make_runtime(pg_settings), await make_runtime(pg_settings)
    context = {**SAMPLES["booking_confirmed"], "recipient_name": "Ada", "timezone": "Europe/Berlin"}
    ids = [new_id() for _ in range(90)]
    await add_pending_deliveries(first, ids, context=context)
    notifiers = [_notifier(r, tmp_path / "mail") for r in (first, second)]
    for notifier in notifiers:
        notifier.settings = notifier.settings.model_copy(update={"batch_size": 7})

    async def drain(notifier: Notifier) -> int:
        sent = 0
        while handled := await send_due(notifier):
            sent += handled
        return sent

    assert sum(await asyncio.gather(*(drain(n) for n in notifiers for _ in range(3)))) == 90
    mails = sorted((tmp_path / "mail").glob("*.eml"))
    recipients = sorted(email.message_from_bytes(m.read_bytes())["To"] for m in mails)
    assert recipients == sorted(f"Ada <guest{i}@example.org>" for i in range(90))
    async with first.db.session() as session:
        stored = (await session.scalars(select(Delivery).where(Delivery.id.in_(ids)))).all()
        attempts = (await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))).all()
    assert {d.status for d in stored} == {"sent"} and {d.attempts for d in stored} == {1}
    assert all(d.provider_message_id and d.sent_at for d in stored)
    assert sorted(a.delivery_id for a in attempts) == sorted(ids)
    assert {a.status for a in attempts} == {"sent"}


async def test_provider_receipts_mark_sms_delivered_or_failed(sqlite_settings, smtp, client_for):
    settings = with_notifications(sqlite_settings, smtp, provider_webhook_token=SecretStr("receipt-token"))
    token = {"Authorization": "Bearer receipt-token"}
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await emit(runtime, booking_confirmed(booking_payload(guest_user_id=uuid.uuid4())))
        await emit(runtime, booking_confirmed(booking_payload(guest_user_id=uuid.uuid4(), phone="+4915112345678")))
        await eventually(lambda: value(len(sandbox(runtime).sent) == 2))
        await eventually(settled(runtime))
        first, second = (m["id"] for m in sandbox(runtime).sent)
        delivered = await client.post(
            "/api/v1/notifications/receipts", headers=token, json={"message_id": first, "status": "delivered"}
        )
        failed = await client.post(
            "/api/v1/notifications/receipts",
            headers=token,
            json={"message_id": second, "status": "failed", "error": "handset unreachable"},
        )
        unknown = await client.post(
            "/api/v1/notifications/receipts", headers=token, json={"message_id": "nope", "status": "delivered"}
        )
        malformed = await client.post("/api/v1/notifications/receipts", headers=token, json={"status": "lost"})
        unsigned = await client.post("/api/v1/notifications/receipts", json={"message_id": first, "status": "failed"})
        rows = {r.provider_message_id: r for r in await deliveries(runtime, Delivery.channel == "sms")}
    assert delivered.status_code == failed.status_code == 204
    assert unknown.status_code == 404
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "body"
    assert unsigned.status_code == 401
    assert rows[first].status == "sent" and rows[first].delivered_at is not None
    assert rows[second].status == "failed" and rows[second].last_error == "receipt: handset unreachable"
