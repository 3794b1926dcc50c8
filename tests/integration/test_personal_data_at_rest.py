"""Privacy as a property of the data at rest: a grep of the whole PostgreSQL database for a user's
email, name and phone finds nothing while the account is in use (every store seals them), and
nothing after erasure (every context drops what it held); the GDPR export covers every context."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import select

from staybook.booking.models import Booking
from staybook.booking.views import ERASED_GUEST
from staybook.kernel.models import OutboxMessage
from staybook.notifications.models import Delivery
from tests.bookings import hold_body, seed_room_type
from tests.integration.notifications_support import eventually
from tests.integration.test_identity_flows import auth, fast_hashing, login, register
from tests.integration.test_identity_security import text_values


def rows_containing(sync_url: str, needles: list[str]) -> list[str]:
    """The needles some stored text value holds (case-insensitive), from every text-like column."""
    values = [value.lower() for value in text_values(sync_url)]
    return [needle for needle in needles if any(needle.lower() in value for value in values)]


async def _all_published(runtime) -> bool:
    async with runtime.db.session() as session:
        pending = (await session.scalars(select(OutboxMessage).where(OutboxMessage.published_at.is_(None)))).all()
    return not pending


async def _deliveries_of(runtime, user_id) -> list[Delivery]:
    async with runtime.db.session() as session:
        return list((await session.scalars(select(Delivery).where(Delivery.user_id == user_id))).all())


async def test_a_grep_of_the_database_finds_no_personal_value_before_or_after_erasure(production_settings, client_for):
    settings = fast_hashing(production_settings)
    settings = settings.model_copy(
        update={
            "run_worker_in_process": True,  # the consumers that write to the guest and erase
            "payments": settings.payments.model_copy(update={"sandbox_instant": True}),
        }
    )
    marker = uuid.uuid4().hex[:10]
    email = f"zelda.{marker}@example.org"
    name = f"Zelda Quartermaine {marker}"
    local_number = f"{random.randint(1_000_000, 9_999_999)}"
    phone = f"+3120{local_number}"
    needles = [email, f"zelda.{marker}", name, marker, f"20{local_number}"]
    sync_url = settings.database_url.replace("+asyncpg", "")

    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await register(client, email=email, name=name, phone=phone)
        tokens = await login(client, email=email)
        me = (await client.get("/api/v1/me", headers=auth(tokens))).json()
        assert me["email"] == email and me["name"] == name and me["phone"] == phone
        room = await seed_room_type(runtime, total=1)
        body = hold_body(room["room_type_id"])
        body["guest"] = {"name": name, "email": email, "phone": phone, "locale": "en"}
        held = await client.post(
            "/api/v1/bookings", json=body, headers=auth(tokens) | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert held.status_code == 201, held.text
        assert held.json()["guest"]["email"] == email
        booking_id = held.json()["id"]
        paid = await client.post(
            f"/api/v1/bookings/{booking_id}/payment",
            json={"payment_method": "tok_success"},
            headers=auth(tokens) | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert paid.status_code == 200, paid.text
        user_id = uuid.UUID(me["id"])
        # The guest is written to (held, confirmed): the deliveries exist, and every event is out.
        await eventually(lambda: _deliveries_of(runtime, user_id))
        await eventually(lambda: _all_published(runtime))

        # The grep sees what is stored in plain text (the booking's reference), and no personal value.
        assert rows_containing(sync_url, [held.json()["reference"]]) == [held.json()["reference"]]
        assert rows_containing(sync_url, needles) == []

        export = (await client.get("/api/v1/me/export", headers=auth(tokens))).json()
        assert export["profile"]["email"] == email
        [exported_booking] = export["booking"]["bookings"]
        assert exported_booking["id"] == booking_id and exported_booking["guest"]["phone"] == phone
        assert [p["booking_id"] for p in export["payments"]["payments"]] == [booking_id]
        assert "card" not in str(export["payments"]).lower()
        assert {m["to"] for m in export["notifications"]["messages"]} >= {email}
        assert "email" in export["notifications"]["preferences"]

        assert (await client.delete("/api/v1/me", headers=auth(tokens))).status_code == 204

        async def erased_everywhere() -> bool:
            async with runtime.db.session() as session:
                booking = await session.get(Booking, uuid.UUID(booking_id))
            deliveries = await _deliveries_of(runtime, user_id)
            return booking.guest == ERASED_GUEST and all(d.recipient is None for d in deliveries)

        await eventually(erased_everywhere)
        await eventually(lambda: _all_published(runtime))
        async with runtime.db.session() as session:
            booking = await session.get(Booking, uuid.UUID(booking_id))
    # The financial record stays: the booking, its amount and its payment, naming nobody.
    assert booking.status == "confirmed" and booking.total_amount == 20_000 and booking.payment_id is not None
    assert rows_containing(sync_url, needles) == []


def with_master_keys(settings, active_id: str, active, previous: dict):
    identity = settings.identity.model_copy(
        update={"pii_master_key": active, "pii_master_key_id": active_id, "pii_previous_master_keys": previous}
    )
    return settings.model_copy(update={"identity": identity})


async def test_a_key_rotation_reseals_what_every_context_sealed(pg_settings, make_runtime, client_for):
    from pydantic import SecretStr

    from staybook.booking import service as bookings
    from staybook.booking import views
    from staybook.identity.pii import new_master_key
    from staybook.kernel.orm import new_id, utcnow
    from staybook.notifications import service as notifications
    from tests.conftest import bearer

    first, second = SecretStr(new_master_key()), SecretStr(new_master_key())
    before = with_master_keys(fast_hashing(pg_settings), "m1", first, {})
    guest = {"name": "Ada Lovelace", "email": "ada@example.org", "phone": "+31201234567", "locale": "en"}
    async with client_for(before) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=2)
        body = {**hold_body(room["room_type_id"]), "guest": guest}
        held = await client.post(
            "/api/v1/bookings", json=body, headers=bearer(before) | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert held.status_code == 201, held.text
        async with runtime.db.unit_of_work() as uow:
            uow.session.add(
                Delivery(
                    id=new_id(), event_id=uuid.uuid4(), channel="email", template="booking_held", locale="en",
                    recipient=uow.sealer.seal({"address": guest["email"]}, notifications.RECIPIENT_PURPOSE),
                    recipient_hash="0" * 64, context={}, status="sent", next_attempt_at=utcnow(),
                )
            )  # fmt: skip

    during = await make_runtime(with_master_keys(pg_settings, "m2", second, {"m1": first}))
    assert await bookings.reseal_personal_data(during, 1) == 1
    assert await notifications.reseal_personal_data(during, 1) == 1
    assert await bookings.reseal_personal_data(during) == 0  # all under m2 now

    after = await make_runtime(with_master_keys(pg_settings, "m2", second, {}))  # the old key is gone
    async with after.db.session() as session:
        booking = await session.get(Booking, uuid.UUID(held.json()["id"]))
        [delivery] = (await session.scalars(select(Delivery))).all()
    assert booking.guest["sealed"].startswith("pd1.m2.")
    assert views.open_guest(after.db.sealer, booking.guest) == guest
    assert after.db.sealer.open(delivery.recipient, notifications.RECIPIENT_PURPOSE) == {"address": guest["email"]}
