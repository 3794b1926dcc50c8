"""What other contexts read from the catalog: room type summaries (the stay's property, its time
zone and currency), calendar seeds, listings for rebuilds, and the ownership check. It imports no
other context, so inventory, search, booking and web depend on it and the catalog's own use cases
may depend on them. The queries themselves are in `catalog.repository`; this module is the part of
the catalog other contexts may name."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from staybook.catalog.models import on_sale
from staybook.catalog.repository import (
    CalendarSeed,
    PropertyListing,
    RoomTypeListing,
    RoomTypeSummary,
    active_room_types,
    calendar_seeds,
    property_count,
    property_listings,
    property_room_types,
    property_room_types_in,
    room_type_count,
    room_type_listings,
    room_type_summary,
    room_type_summary_in,
)
from staybook.kernel.dates import today_in
from staybook.kernel.errors import Forbidden
from staybook.kernel.security import Principal

__all__ = [
    "CalendarSeed",
    "PropertyListing",
    "RoomTypeListing",
    "RoomTypeSummary",
    "active_room_types",
    "authorize_room_type",
    "calendar_seeds",
    "ensure_may_change",
    "on_sale",
    "property_count",
    "property_listings",
    "property_room_types",
    "property_room_types_in",
    "room_type_count",
    "room_type_listings",
    "room_type_summary",
    "room_type_summary_in",
    "today_in",
]


def ensure_may_change(principal: Principal, host_id: uuid.UUID) -> None:
    """Only the owning host or an admin changes a property and everything under it."""
    if not principal.is_admin and principal.user_id != host_id:
        raise Forbidden("Only the property's host or an admin may change it")


async def authorize_room_type(session: AsyncSession, principal: Principal, room_type_id: uuid.UUID) -> RoomTypeSummary:
    """The room type's summary if `principal` may change it (its calendar, for instance); 404/403 otherwise."""
    summary = await room_type_summary(session, room_type_id)
    ensure_may_change(principal, summary.host_id)
    return summary
