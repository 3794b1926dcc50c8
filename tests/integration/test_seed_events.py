"""Seeding leaves its events for the worker: the seeded accounts become notification contacts
once a worker starts, on JetStream and on the in-process bus (where an event relayed before any
consumer subscribed was lost: the demo host got none of its new-booking notices)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from staybook import cli
from staybook.identity.models import User
from staybook.kernel.models import OutboxMessage
from staybook.kernel.worker import Worker
from staybook.notifications.models import Contact


async def _counts(runtime) -> tuple[int, int, int]:
    # SQLite has one writer: on a loaded machine the worker's transactions can hold the file past
    # the busy timeout, and a read refused then is asked again (what is checked is the outcome).
    for _ in range(5):
        try:
            return await _count_once(runtime)
        except OperationalError as error:
            if "database is locked" not in str(error):
                raise
    return await _count_once(runtime)


async def _count_once(runtime) -> tuple[int, int, int]:
    async with runtime.db.session() as session:
        users = await session.scalar(select(func.count()).select_from(User))
        contacts = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.user_id.in_(select(User.id)))
        )
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
    return users, contacts, unpublished


async def test_seed_then_worker_delivers_the_seeded_events(live_settings, make_runtime):
    await cli._seed(live_settings, properties=2, seed_value=7)
    runtime = await make_runtime(live_settings)
    users, contacts, unpublished = await _counts(runtime)
    assert users >= 3 and contacts == 0
    assert unpublished > 0  # left for the worker, whose consumers exist before it relays
    worker = Worker(runtime)
    await worker.start()
    try:
        deadline = time.monotonic() + 120  # a bound on waiting, not a performance claim
        while time.monotonic() < deadline:
            users, contacts, unpublished = await _counts(runtime)
            if contacts == users and unpublished == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
    assert (contacts, unpublished) == (users, 0)
