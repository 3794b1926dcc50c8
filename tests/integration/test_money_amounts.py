"""Every amount the API accepts (up to 10^13 minor units, kernel.schemas.MAX_AMOUNT) is stored:
prices, stay totals, payments. On PostgreSQL a nightly price over 2^31 - 1 was a 500 (found by
schemathesis, tests/integration/test_openapi_contract.py), and a stay whose total passed the bound
was a 500 on both databases."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.bookings import START, hold_body, seed_room_type
from tests.conftest import bearer

LARGEST = 10**13  # kernel.schemas.Money's bound


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    settings = request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")
    return settings.model_copy(update={"payments": settings.payments.model_copy(update={"sandbox_instant": True})})


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def test_the_largest_price_is_stored_booked_and_paid(db_settings, client_for):
    async with client_for(db_settings) as client:
        room = await seed_room_type(client.app.state.runtime, total=1)
        host = bearer(db_settings, "host", room["host_id"])
        price = {"amount": LARGEST, "currency": "EUR"}
        changed = await client.put(
            f"/api/v1/room-types/{room['room_type_id']}/calendar",
            json={"from": START.isoformat(), "to": (START + timedelta(days=3)).isoformat(), "price": price},
            headers=host,
        )
        assert changed.status_code == 200, changed.text
        assert {night["price"] for night in changed.json()["nights"]} == {LARGEST}

        guest = bearer(db_settings, "guest")
        # Three nights at the largest price add up to more than any amount may be: refused, nothing held.
        over = await client.post(
            "/api/v1/bookings", json=hold_body(room["room_type_id"], nights=3), headers=guest | key()
        )
        assert over.status_code == 422 and over.json()["errors"][0]["field"] == "body", over.text

        third = {"from": START.isoformat(), "to": (START + timedelta(days=3)).isoformat(), "price": {**price}}
        third["price"]["amount"] = LARGEST // 3
        assert (
            await client.put(f"/api/v1/room-types/{room['room_type_id']}/calendar", json=third, headers=host)
        ).is_success
        held = await client.post(
            "/api/v1/bookings", json=hold_body(room["room_type_id"], nights=3), headers=guest | key()
        )
        assert held.status_code == 201, held.text
        total = 3 * (LARGEST // 3)
        assert held.json()["total"] == {"amount": total, "currency": "EUR"}  # over 2^31 and 2^32

        paid = await client.post(
            f"/api/v1/bookings/{held.json()['id']}/payment",
            json={"payment_method": "tok_success"},
            headers=guest | key(),
        )
        assert paid.status_code == 200, paid.text
        booking = await client.get(held.headers["location"], headers=guest)
        assert booking.json()["status"] == "confirmed" and booking.json()["total"]["amount"] == total

        room_type = await client.patch(
            f"/api/v1/room-types/{room['room_type_id']}", json={"base_price": price}, headers=host
        )
        assert room_type.status_code == 200 and room_type.json()["base_price"] == price
