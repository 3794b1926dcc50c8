"""What the web pages react to: catalog changes make the cached listing of guests' pages stale
(every API process bumps it, as inventory does for its availability answers)."""

from __future__ import annotations

from staybook.catalog.events import PropertyArchived, PropertyUpdated
from staybook.kernel.consumers import ReplicaSubscription
from staybook.web import service

SUBSCRIPTIONS = [
    ReplicaSubscription("web.listing-cache.updated", PropertyUpdated.subject(), service.on_listing_changed),
    ReplicaSubscription("web.listing-cache.archived", PropertyArchived.subject(), service.on_listing_changed),
]
