"""Demo seeding (bulk, COPY on PostgreSQL, no per-night events) and the daily calendar roll-forward."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, func, select, text

from staybook.catalog import facts as catalog_facts
from staybook.catalog import seed as catalog_seed
from staybook.catalog import service as catalog
from staybook.catalog.models import Property, RoomType
from staybook.catalog.schemas import AMENITIES, PropertyCreate, RoomTypeCreate
from staybook.inventory import seed as inventory_seed
from staybook.inventory import service as inventory
from staybook.inventory.models import RoomNight
from staybook.kernel.models import OutboxMessage
from staybook.kernel.security import Principal


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    settings = request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")
    return settings.model_copy(update={"inventory": settings.inventory.model_copy(update={"horizon_days": 40})})


async def test_seed_demo_creates_real_cities_rooms_and_calendars(db_settings, make_runtime):
    runtime = await make_runtime(db_settings)
    seeded = await catalog_seed.seed_demo(runtime, properties=30, seed=5)
    calendars = await inventory_seed.seed_demo(runtime, properties=30, seed=5)
    assert seeded["properties"] == 30 and 30 <= seeded["room_types"] <= 120
    assert calendars["room_types"] == seeded["room_types"] and calendars["room_nights"] == seeded["room_types"] * 40
    async with runtime.db.session() as session:
        props = (await session.scalars(select(Property))).all()
        events = dict(
            (
                await session.execute(select(OutboxMessage.event_type, func.count()).group_by(OutboxMessage.event_type))
            ).all()
        )
        prices = (await session.scalars(select(RoomNight.price_amount).limit(400))).all()
    assert events == {"property.created": 30, "room_type.created": seeded["room_types"]}
    for prop in props:
        PropertyCreate.model_validate({field: getattr(prop, field) for field in PropertyCreate.model_fields})
        assert set(prop.amenities) <= set(AMENITIES)
    assert len({p.country for p in props}) > 5
    # The first properties are in the cities the README tries, and each of them sleeps two.
    showcase = {(p.city, p.country) for p in props}
    assert {("Paris", "FR"), ("London", "GB"), ("Tokyo", "JP")} <= showcase
    async with runtime.db.session() as session:
        paris_sleeps = (
            await session.execute(
                select(Property.id, func.max(RoomType.max_guests))
                .join(RoomType, RoomType.property_id == Property.id)
                .where(Property.city == "Paris")
                .group_by(Property.id)
            )
        ).all()
    assert paris_sleeps and all(most >= 2 for _, most in paris_sleeps)
    assert len(set(prices)) > 3  # seasonal and weekend shape, not one flat price
    if runtime.db.dialect == "postgresql":
        # Built in a twin table and swapped in: the keys, index and checks are the migrations' own.
        async with runtime.db.session() as session:
            constraints = set(
                (
                    await session.execute(
                        text("SELECT conname FROM pg_constraint WHERE conrelid = 'room_nights'::regclass")
                    )
                ).scalars()
            )
            indexes = set(
                (
                    await session.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'room_nights'"))
                ).scalars()
            )
            summaries = await catalog_facts.active_room_types(session, after=None, limit=3)
            for summary in summaries:
                nights = await inventory.nights(session, summary.room_type_id, summary.today(), date.max)
                expected = inventory_seed.demo_calendar(summary, summary.today(), 40)
                # The database prices nights with the same seasonal shape (rounding ties aside).
                assert [n.night for n in nights] == [r[1] for r in expected]
                assert sum(n.price != r[6] for n, r in zip(nights, expected, strict=True)) <= 1
        assert {"pk_room_nights", "ix_room_nights_property_night"} <= constraints | indexes
        assert len([c for c in constraints if c.startswith("ck_")]) == 3
    # Seeding again leaves existing calendars alone.
    assert (await inventory_seed.seed_demo(runtime, properties=0, seed=5))["room_nights"] == 0


async def test_roll_forward_opens_missing_nights_up_to_the_horizon(db_settings, make_runtime):
    runtime = await make_runtime(db_settings)
    host = Principal(uuid.uuid4(), "host")
    created = await catalog.create_property(
        runtime,
        host,
        PropertyCreate(
            name="Fjord Cabins",
            address="Strandveien 2",
            city="Bergen",
            country="NO",
            latitude=60.39,
            longitude=5.32,
            timezone="Europe/Oslo",
            currency="NOK",
            property_type="cabin",
        ),
    )
    room_type = await catalog.create_room_type(
        runtime,
        host,
        created.id,
        RoomTypeCreate(name="Cabin", max_guests=4, units=2, base_price={"amount": 150000, "currency": "NOK"}),
    )
    async with runtime.db.unit_of_work() as uow:
        last = await uow.session.scalar(select(func.max(RoomNight.night)))
        await uow.session.execute(delete(RoomNight).where(RoomNight.night > last - timedelta(days=10)))
        await uow.session.execute(delete(OutboxMessage))
    assert await inventory.roll_calendars_forward(runtime) == 10
    assert await inventory.roll_calendars_forward(runtime) == 0
    async with runtime.db.session() as session:
        nights = await session.scalar(select(func.count()).where(RoomNight.room_type_id == room_type.id))
        events = (await session.scalars(select(OutboxMessage.payload))).all()
        units = await session.scalar(select(RoomType.units))
    assert nights == 40 and units == 2
    assert len(events) == 1 and events[0]["reason"] == "roll-forward" and len(events[0]["nights"]) == 10
