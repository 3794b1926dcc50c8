"""The last-room race across two real API processes: never a double booking.

200 guests ask for the last unit at once, each over its own connection, spread over
two `staybook serve` processes on the same PostgreSQL database: exactly one hold,
199 problems naming the nights. Then overlapping random stays: the database's own
counters never exceed the allotment, and match the holds the API granted.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from staybook.booking.models import Booking
from staybook.kernel.runtime import Wiring
from tests.bookings import START, hold_body, night_counts, seed_room_type
from tests.conftest import bearer
from tests.contract import checked_async_client
from tests.servers import servers

pytestmark = pytest.mark.e2e


async def _post_alone(url: str, body: dict, headers: dict) -> httpx.Response:
    async with checked_async_client(url, timeout=300) as client:  # one connection per guest
        return await client.post("/api/v1/bookings", json=body, headers=headers)


async def test_last_room_two_processes_200_guests(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())
    room = await seed_room_type(runtime, total=1)
    body = hold_body(room["room_type_id"], nights=3)
    with servers(pg_settings, count=2) as (first, second):
        responses = await asyncio.gather(
            *(
                _post_alone(
                    (first if i % 2 else second).url,
                    body,
                    bearer(pg_settings, "guest") | {"Idempotency-Key": uuid.uuid4().hex},
                )
                for i in range(200)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(409) == 199, statuses
    refused = next(r for r in responses if r.status_code == 409).json()
    assert refused["type"].endswith("nights-unavailable")
    assert {n["reason"] for n in refused["nights"]} == {"sold out"}
    nights = await night_counts(runtime, room["room_type_id"])
    assert [nights[(START + timedelta(days=i)).isoformat()] for i in range(4)] == [(1, 1, 0)] * 3 + [(1, 0, 0)]
    async with runtime.db.session() as session:
        held = (await session.scalars(select(Booking.status).where(Booking.room_type_id == room["room_type_id"]))).all()
    assert held == ["held"]


async def test_overlapping_random_stays_two_processes(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())
    room = await seed_room_type(runtime, total=3, days=20, max_guests=4)
    rng = random.Random(6)
    bodies = []
    for _ in range(200):
        first_night = rng.randrange(0, 18)
        nights = rng.randrange(1, min(6, 20 - first_night) + 1)
        bodies.append(
            hold_body(
                room["room_type_id"],
                check_in=START + timedelta(days=first_night),
                nights=nights,
                units=rng.choice([1, 1, 2]),
            )
        )
    with servers(pg_settings, count=2) as (first, second):
        responses = await asyncio.gather(
            *(
                _post_alone(
                    (first if i % 2 else second).url,
                    body,
                    bearer(pg_settings, "guest") | {"Idempotency-Key": uuid.uuid4().hex},
                )
                for i, body in enumerate(bodies)
            )
        )
    assert {r.status_code for r in responses} <= {201, 409}
    won = [b for b, r in zip(bodies, responses, strict=True) if r.status_code == 201]
    assert won and len(won) < len(bodies)
    expected: dict[str, int] = {}
    for body in won:
        night = START.fromisoformat(body["check_in"])
        while night < START.fromisoformat(body["check_out"]):
            expected[night.isoformat()] = expected.get(night.isoformat(), 0) + body["units"]
            night += timedelta(days=1)
    for night, (total, held, booked) in (await night_counts(runtime, room["room_type_id"])).items():
        assert held + booked <= total
        assert held == expected.get(night, 0)
