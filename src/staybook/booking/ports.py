"""What booking needs from outside, behind ports: the process's payments (`BookingDeps`), and what it
needs to know about the thing being booked.

`StayCatalog` is the booking context's view of the catalog: the facts of a room
type and its property that a booking copies in at hold time. `CatalogStayCatalog`
asks `catalog.facts` for them (booking never imports catalog's
models). Nightly prices come from the hold itself (the inventory's RETURNING
clause), so the price charged is the price of the rows actually held.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from staybook.catalog import facts as catalog_facts
from staybook.kernel.db import UnitOfWork
from staybook.payments.service import PaymentsDeps

SagaCheckpoint = Callable[[str], None]


def no_checkpoint(name: str) -> None:
    """Production's saga checkpoint: nothing happens between a provider call and its transaction."""


@dataclass(frozen=True)
class BookingDeps:
    """What the booking context uses in a process (built by `bootstrap.lifespan`): the payments
    context's provider and breaker, which the saga calls, and the saga's checkpoint.

    The checkpoint is called with the name of each saga point between a provider call and its
    transaction ("authorising", "authorised-at-provider", "captured-at-provider", "capturing", and
    a refund's step): a seam for the crash tests, given to `create_app(saga_checkpoint=...)`
    (tests/faults.py kills the process there)."""

    payments: PaymentsDeps
    checkpoint: SagaCheckpoint = no_checkpoint


# The facts of a room type and its property that a booking copies in: the catalog's own summary,
# read through catalog.facts (whether it is on sale is the catalog's rule, `on_sale`).
RoomTypeFacts = catalog_facts.RoomTypeSummary


def property_snapshot(facts: RoomTypeFacts) -> dict:
    """The property as the booking keeps it: a contract, unchanged by later catalog edits."""
    return {
        "property_id": str(facts.property_id),
        "name": facts.property_name,
        "address": facts.address,
        "city": facts.city,
        "country": facts.country,
        "timezone": facts.timezone,
        "check_in_time": facts.check_in_time,
        "check_out_time": facts.check_out_time,
    }


class StayCatalog(Protocol):
    async def room_type(self, uow: UnitOfWork, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        """The room type with its property's facts (read in the caller's unit of work), or None
        when it does not exist."""


class CatalogStayCatalog:
    async def room_type(self, uow: UnitOfWork, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        return await catalog_facts.room_type_summary_in(uow, room_type_id)
