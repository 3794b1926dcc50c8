"""Hold expiry by several workers at once, recovery after an expiry, and SQLite's exclusive holds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select, update

from staybook.booking import jobs, service
from staybook.booking.domain import SagaStep
from staybook.booking.models import Booking, BookingHistory, BookingSaga
from staybook.booking.schemas import HoldRequest
from staybook.inventory.service import NightsUnavailable
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Adapters, Wiring
from staybook.kernel.security import Principal
from tests.bookings import START, hold_body, night_counts, seed_room_type


async def _hold(runtime, room, **kw) -> dict:
    return await service.place_hold(
        runtime, Principal(uuid.uuid4(), "guest"), HoldRequest(**hold_body(room, **kw)), None
    )


async def test_concurrent_expiry_workers_release_each_hold_once(pg_settings, make_runtime):
    settings = pg_settings.model_copy(
        update={"booking": pg_settings.booking.model_copy(update={"expiry_batch_size": 7}), "database_pool_size": 20}
    )
    runtime = await make_runtime(settings, Wiring())
    room = await seed_room_type(runtime, total=40)
    for _ in range(40):
        await _hold(runtime, room["room_type_id"])
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(update(Booking).values(expires_at=utcnow() - timedelta(seconds=1)))
    workers = [await make_runtime(settings, Wiring()) for _ in range(3)]

    async def drain(worker) -> int:
        expired = 0
        while count := await jobs.expire_holds(worker):
            expired += count
        return expired

    counts = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(counts) == 40
    assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (40, 0, 0)
    async with runtime.db.session() as session:
        statuses = set((await session.scalars(select(Booking.status))).all())
        history = await session.scalar(
            select(func.count()).select_from(BookingHistory).where(BookingHistory.to_status == "expired")
        )
    assert statuses == {"expired"} and history == 40


async def test_unexpired_and_paying_holds_are_left_alone(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())
    room = await seed_room_type(runtime, total=3)
    fresh = await _hold(runtime, room["room_type_id"])
    paying = await _hold(runtime, room["room_type_id"])
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(
            update(Booking).where(Booking.id == uuid.UUID(paying["id"])).values(expires_at=utcnow())
        )
        await uow.session.execute(
            update(BookingSaga)
            .where(BookingSaga.booking_id == uuid.UUID(paying["id"]))
            .values(step=SagaStep.AUTHORISING)
        )
    assert await jobs.expire_holds(runtime) == 0
    async with runtime.db.session() as session:
        assert (await session.get(Booking, uuid.UUID(fresh["id"]))).status == "held"


async def test_a_hold_expires_when_the_clock_passes_its_deadline(pg_settings, make_runtime):
    """The clock given to the runtime is the time holds are given their deadline and expire at:
    moving it past the TTL expires the hold, with no wait and no edited row."""
    ahead = timedelta(0)
    runtime = await make_runtime(pg_settings, Wiring(), Adapters(clock=lambda: utcnow() + ahead))
    room = await seed_room_type(runtime, total=1)
    held = await _hold(runtime, room["room_type_id"])
    ttl = timedelta(seconds=pg_settings.booking.hold_ttl_seconds)
    assert await jobs.expire_holds(runtime) == 0
    ahead = ttl - timedelta(seconds=5)
    assert await jobs.expire_holds(runtime) == 0  # still before the deadline
    ahead = ttl + timedelta(seconds=1)
    assert await jobs.expire_holds(runtime) == 1
    async with runtime.db.session() as session:
        assert (await session.get(Booking, uuid.UUID(held["id"]))).status == "expired"
    assert (await night_counts(runtime, room["room_type_id"]))[START.isoformat()] == (1, 0, 0)


async def test_sqlite_holds_are_exclusive(sqlite_settings, make_runtime):
    runtime = await make_runtime(sqlite_settings, Wiring())
    room = await seed_room_type(runtime, total=1)

    async def attempt():
        try:
            await _hold(runtime, room["room_type_id"], nights=3)
            return True
        except NightsUnavailable:
            return False

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert results.count(True) == 1
    nights = await night_counts(runtime, room["room_type_id"])
    assert [nights[(START + timedelta(days=i)).isoformat()] for i in range(3)] == [(1, 1, 0)] * 3
