"""Builds the inventory context's parts for one process: the cache its availability answers live in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from staybook.inventory import service
from staybook.inventory.events import InventoryChanged
from staybook.kernel.cache import Cache
from staybook.kernel.consumers import ReplicaSubscription
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime


@dataclass(frozen=True)
class InventoryDeps:
    cache: Cache


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[InventoryDeps]:
    yield InventoryDeps(cache=runtime.cache)


async def on_inventory_changed(envelope: EventEnvelope, deps: InventoryDeps) -> None:
    await service.forget_availability(deps.cache, envelope.payload["property_id"])


# Every API process drops its cached availability answers of the property: holds and releases
# made by the booking context reach the cache this way (the calendar routes also bump directly).
SUBSCRIPTIONS = [ReplicaSubscription("inventory.availability-cache", InventoryChanged.subject(), on_inventory_changed)]
