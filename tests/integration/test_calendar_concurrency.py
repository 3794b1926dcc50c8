"""Bulk calendar updates racing holds: the CHECK constraint and the one-statement update keep every night sane."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from staybook.inventory import service as inventory
from staybook.inventory.models import RoomNight
from staybook.inventory.service import NightsUnavailable, Stay, UnitsBelowCommitted
from staybook.kernel.runtime import Wiring

START = date(2030, 5, 1)


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    return request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")


async def test_units_changes_racing_holds_never_oversell(db_settings, make_runtime):
    settings = db_settings.model_copy(update={"database_pool_size": 10, "database_max_overflow": 5})
    runtime = await make_runtime(settings, Wiring())
    room_type_id = uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await inventory.open_calendar(
            uow,
            property_id=uuid.uuid4(),
            room_type_id=room_type_id,
            total=4,
            price_amount=8000,
            currency="EUR",
            start=START,
            days=14,
        )
    rng = random.Random(7)
    outcomes: list[str] = []

    async def hold_one() -> None:
        first = rng.randrange(0, 12)
        stay = Stay(room_type_id, START + timedelta(days=first), START + timedelta(days=first + rng.randrange(1, 3)))
        try:
            async with runtime.db.unit_of_work() as uow:
                await inventory.hold(uow, stay)
            outcomes.append("held")
        except NightsUnavailable:
            outcomes.append("refused")

    async def change_units() -> None:
        units = rng.randrange(0, 6)
        try:
            async with runtime.db.unit_of_work() as uow:
                await inventory.update_calendar(uow, room_type_id, START, START + timedelta(days=14), units=units)
            outcomes.append("units")
        except UnitsBelowCommitted as conflict:
            assert conflict.extensions["nights"]
            outcomes.append("units refused")

    tasks = [hold_one() for _ in range(60)] + [change_units() for _ in range(20)]
    rng.shuffle(tasks)
    await asyncio.gather(*tasks)
    async with runtime.db.session() as session:
        rows = (await session.execute(select(RoomNight).where(RoomNight.room_type_id == room_type_id))).scalars().all()
    assert len(rows) == 14
    assert all(r.held + r.booked <= r.total for r in rows)
    # Every night's total is one of the unit counts that was set in full (no partial updates).
    assert len({r.total for r in rows}) == 1
    assert "held" in outcomes and ("units" in outcomes or "units refused" in outcomes)
