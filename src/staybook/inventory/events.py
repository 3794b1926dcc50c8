"""Events the inventory context publishes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import ClassVar

from pydantic import BaseModel

from staybook.kernel.events import Event


class NightSnapshot(BaseModel):
    night: date
    total: int
    available: int
    price: int
    closed: bool
    closed_to_arrival: bool
    min_stay: int


class InventoryChanged(Event):
    """The state of a contiguous range of nights of one room type after a change."""

    context: ClassVar[str] = "inventory"
    event_type: ClassVar[str] = "inventory.changed"

    property_id: uuid.UUID
    room_type_id: uuid.UUID
    start: date
    end: date  # exclusive
    currency: str
    reason: str
    nights: list[NightSnapshot]
