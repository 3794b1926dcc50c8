"""Helpers of the booking tests: a property, a room type and its calendar, written with plain SQL
(tests may use any context's tables)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from sqlalchemy import insert, select

from staybook.booking.ports import BookingDeps
from staybook.catalog.models import Property, RoomType
from staybook.inventory import service as inventory
from staybook.inventory.models import RoomNight
from staybook.kernel.orm import utcnow
from staybook.payments import bootstrap as payments_bootstrap
from staybook.payments.service import PaymentsDeps

START = date.today() + timedelta(days=60)


def payments_of(runtime) -> PaymentsDeps:
    """The payments deps of an app's runtime (its lifespan built them), or new ones for a runtime
    that entered no lifespan (`make_runtime`): the sandbox keeps its ledger in the database."""
    return runtime.context_deps.get("payments") or payments_bootstrap.build(runtime)


def booking_deps(runtime) -> BookingDeps:
    """The booking deps of an app's runtime, or new ones for a runtime that entered no lifespan."""
    return runtime.context_deps.get("booking") or BookingDeps(payments=payments_of(runtime))


async def seed_room_type(
    runtime,
    *,
    total: int = 1,
    days: int = 30,
    price: int = 10_000,
    start: date = START,
    max_guests: int = 2,
    policy: str = "moderate",
    status: str = "active",
    host_id: uuid.UUID | None = None,
) -> dict:
    property_id, room_type_id = uuid.uuid4(), uuid.uuid4()
    host_id = host_id or uuid.uuid4()
    now = utcnow()
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(
            insert(Property).values(
                id=property_id,
                host_id=host_id,
                name="Hotel Test",
                description="",
                property_type="hotel",
                address="1 Main St",
                city="Lisbon",
                country="PT",
                latitude=38.7,
                longitude=-9.1,
                timezone="Europe/Lisbon",
                currency="EUR",
                amenities=[],
                check_in_time="15:00",
                check_out_time="11:00",
                cancellation_policy=policy,
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
        await uow.session.execute(
            insert(RoomType).values(
                id=room_type_id,
                property_id=property_id,
                name="Double",
                description="",
                max_guests=max_guests,
                beds=1,
                units=total,
                base_price_amount=price,
                currency="EUR",
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
        await inventory.open_calendar(
            uow,
            property_id=property_id,
            room_type_id=room_type_id,
            total=total,
            price_amount=price,
            currency="EUR",
            start=start,
            days=days,
        )
    return {"property_id": property_id, "room_type_id": room_type_id, "host_id": host_id}


def hold_body(room_type_id, check_in: date = START, nights: int = 2, guests: int = 2, units: int = 1) -> dict:
    return {
        "room_type_id": str(room_type_id),
        "check_in": check_in.isoformat(),
        "check_out": (check_in + timedelta(days=nights)).isoformat(),
        "guests": guests,
        "units": units,
        "guest": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+351912345678", "locale": "en"},
    }


async def night_counts(runtime, room_type_id) -> dict:
    async with runtime.db.session() as session:
        rows = (
            await session.execute(
                select(RoomNight.night, RoomNight.total, RoomNight.held, RoomNight.booked)
                .where(RoomNight.room_type_id == room_type_id)
                .order_by(RoomNight.night)
            )
        ).all()
    return {str(r.night): (r.total, r.held, r.booked) for r in rows}
