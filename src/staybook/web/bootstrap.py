"""What the web pages react to: catalog changes make the cached listing of guests' pages stale
(every API process bumps it, as inventory does for its availability answers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from staybook.catalog.events import PropertyArchived, PropertyUpdated
from staybook.inventory import service as inventory
from staybook.kernel.cache import Cache
from staybook.kernel.consumers import ReplicaSubscription
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime


@dataclass(frozen=True)
class WebDeps:
    cache: Cache  # guests' pages are cached under the availability namespaces


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[WebDeps]:
    yield WebDeps(cache=runtime.cache)


async def on_listing_changed(envelope: EventEnvelope, deps: WebDeps) -> None:
    """A property edited elsewhere (the API, the photo worker): its guests' pages are stale."""
    await inventory.forget_availability(deps.cache, envelope.payload["property_id"])


SUBSCRIPTIONS = [
    ReplicaSubscription("web.listing-cache.updated", PropertyUpdated.subject(), on_listing_changed),
    ReplicaSubscription("web.listing-cache.archived", PropertyArchived.subject(), on_listing_changed),
]
