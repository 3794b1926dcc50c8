"""The hold statement against real databases: exactly one winner for the last unit, never an oversell."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from staybook.inventory import service as inventory
from staybook.inventory.models import RoomNight
from staybook.inventory.service import NightsUnavailable, Stay
from staybook.kernel.runtime import Wiring

START = date(2030, 1, 1)


async def open_room_type(runtime, total: int, days: int = 30) -> uuid.UUID:
    room_type_id = uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await inventory.open_calendar(
            uow,
            property_id=uuid.uuid4(),
            room_type_id=room_type_id,
            total=total,
            price_amount=10_000,
            currency="EUR",
            start=START,
            days=days,
        )
    return room_type_id


async def try_hold(runtime, stay: Stay) -> bool:
    try:
        async with runtime.db.unit_of_work() as uow:
            await inventory.hold(uow, stay)
        return True
    except NightsUnavailable:
        return False


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    return request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")


async def test_last_unit_has_exactly_one_winner(db_settings, make_runtime):
    settings = db_settings.model_copy(update={"database_pool_size": 40, "database_max_overflow": 20})
    runtime = await make_runtime(settings, Wiring())
    room_type_id = await open_room_type(runtime, total=1)
    stay = Stay(room_type_id, START + timedelta(days=3), START + timedelta(days=6))
    results = await asyncio.gather(*(try_hold(runtime, stay) for _ in range(50)))
    assert results.count(True) == 1
    async with runtime.db.session() as session:
        held = (await session.scalars(select(RoomNight.held).where(RoomNight.room_type_id == room_type_id))).all()
    assert sorted(held) == [0] * 27 + [1] * 3


async def test_overlapping_random_stays_never_oversell(pg_settings, make_runtime):
    settings = pg_settings.model_copy(update={"database_pool_size": 40, "database_max_overflow": 20})
    runtime = await make_runtime(settings, Wiring())
    room_type_id = await open_room_type(runtime, total=3, days=20)
    rng = random.Random(42)
    stays = []
    for _ in range(150):
        first = rng.randrange(0, 18)
        stays.append(
            Stay(
                room_type_id,
                START + timedelta(days=first),
                START + timedelta(days=rng.randrange(first + 1, min(first + 6, 20) + 1)),
                units=rng.choice([1, 1, 2]),
            )
        )
    results = await asyncio.gather(*(try_hold(runtime, s) for s in stays))
    async with runtime.db.session() as session:
        rows = (await session.scalars(select(RoomNight).where(RoomNight.room_type_id == room_type_id))).all()
    expected = {row.night: 0 for row in rows}
    for stay, won in zip(stays, results, strict=True):
        if won:
            for night in stay.nights:
                expected[night] += stay.units
    for row in rows:
        assert row.held + row.booked <= row.total
        assert row.held == expected[row.night]
    assert any(results) and not all(results)


async def test_unavailable_nights_are_named_and_nothing_is_left_held(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    room_type_id = await open_room_type(runtime, total=1, days=5)
    assert await try_hold(runtime, Stay(room_type_id, START + timedelta(days=2), START + timedelta(days=3)))
    with pytest.raises(NightsUnavailable) as caught:
        async with runtime.db.unit_of_work() as uow:
            await inventory.hold(uow, Stay(room_type_id, START, START + timedelta(days=7)))
    reasons = {n["night"]: n["reason"] for n in caught.value.extensions["nights"]}
    assert reasons == {
        (START + timedelta(days=2)).isoformat(): "sold out",
        (START + timedelta(days=5)).isoformat(): "not on sale",
        (START + timedelta(days=6)).isoformat(): "not on sale",
    }
    async with runtime.db.session() as session:
        held = dict(
            (
                await session.execute(
                    select(RoomNight.night, RoomNight.held).where(RoomNight.room_type_id == room_type_id)
                )
            ).all()
        )
    assert held[START] == 0 and held[START + timedelta(days=2)] == 1


async def test_hold_confirm_cancel_round_trip(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    room_type_id = await open_room_type(runtime, total=2, days=5)
    stay = Stay(room_type_id, START, START + timedelta(days=2), units=2)
    async with runtime.db.unit_of_work() as uow:
        await inventory.hold(uow, stay)
    async with runtime.db.unit_of_work() as uow:
        confirmed = await inventory.confirm_hold(uow, stay)
    assert [n.available for n in confirmed] == [0, 0]
    assert not await try_hold(runtime, Stay(room_type_id, START, START + timedelta(days=1)))
    async with runtime.db.unit_of_work() as uow:
        released = await inventory.release_booking(uow, stay)
    assert [n.available for n in released] == [2, 2]
    with pytest.raises(inventory.InventoryInconsistent):
        async with runtime.db.unit_of_work() as uow:
            await inventory.release_hold(uow, stay)
