"""The inventory context's periodic job: rolling every calendar forward so the horizon stays open."""

from __future__ import annotations

import uuid
from datetime import timedelta

from staybook.catalog import facts as catalog
from staybook.inventory import repository
from staybook.inventory.service import changed_event
from staybook.kernel.runtime import PeriodicJob, Runtime

# ------------------------------------------------------------------ rolling the calendar forward


async def roll_calendars_forward(runtime: Runtime, *, batch_size: int = 1000) -> int:
    """Opens nights up to the horizon for every active room type; returns how many nights were added.

    Safe with two workers at once: inserts skip nights that exist (ON CONFLICT DO NOTHING).
    One inventory.changed per room type and run, with reason roll-forward.
    """
    horizon = runtime.settings.inventory.horizon_days
    added = 0
    after: uuid.UUID | None = None
    while True:
        async with runtime.db.session() as session:
            room_types = await catalog.active_room_types(session, after=after, limit=batch_size)
        if not room_types:
            return added
        after = room_types[-1].room_type_id
        async with runtime.db.unit_of_work() as uow:
            last_nights = await repository.last_nights(uow.session, [r.room_type_id for r in room_types])
            rows = []
            for summary in room_types:
                today = summary.today()
                first = (
                    max(today, last_nights[summary.room_type_id] + timedelta(days=1))
                    if (summary.room_type_id in last_nights)
                    else today
                )
                rows.extend(
                    {
                        "room_type_id": summary.room_type_id,
                        "night": night,
                        "property_id": summary.property_id,
                        "total": summary.units,
                        "held": 0,
                        "booked": 0,
                        "price_amount": summary.base_price_amount,
                        "currency": summary.currency,
                        "min_stay": 1,
                        "closed": False,
                        "closed_to_arrival": False,
                    }
                    for night in (
                        first + timedelta(days=i) for i in range((today + timedelta(days=horizon) - first).days)
                    )
                )
            if rows:
                inserted = await repository.insert_missing_nights(uow.session, rows)
                added += len(inserted)
                by_room_type: dict[uuid.UUID, list] = {}
                for row in inserted:
                    by_room_type.setdefault(row.room_type_id, []).append(row)
                for room_type_id, created in by_room_type.items():
                    uow.emit(changed_event(room_type_id, created, "roll-forward"))


JOBS = [PeriodicJob("inventory.roll-forward", 24 * 3600, lambda runtime, _: roll_calendars_forward(runtime))]
