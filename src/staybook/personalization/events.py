"""The events personalization reacts to; it publishes none (signals travel on their own stream).

- `user.erased`: forget the user's profile, archived signals and model rows;
- `booking.confirmed`: a `booking` signal of the guest, from the booking's own event, so the
  booking path is not touched.

Handlers are built around the process's `Personalization` (`subscriptions(deps)`); the
lifespan adds them to the worker's wiring.
"""

from __future__ import annotations

import uuid

from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.personalization import service


def subscriptions(deps: service.Personalization, model_dir) -> list[Subscription]:
    async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork) -> None:
        await service.erase_user(deps, model_dir, uuid.UUID(str(envelope.payload["user_id"])))

    async def on_booking_confirmed(envelope: EventEnvelope, uow: UnitOfWork) -> None:
        await service.record_booking(deps, envelope)

    return [
        Subscription("personalization.user.erased", "staybook.identity.user.erased", on_user_erased),
        Subscription("personalization.booking.confirmed", "staybook.booking.booking.confirmed", on_booking_confirmed),
    ]
