"""Builds the personalization context's parts for one process and wires them in.

`lifespan(runtime)` builds the `Personalization` of this process (signal log, profile
store, archive, facts, model), loads the properties' facts and the model CURRENT names,
adds the context's jobs to the process's wiring (their number depends on the settings)
and yields it; the composition root hands it to the subscriptions below and to the jobs
(the worker starts them: `staybook worker`, or the demo's in-process worker).

The events it reacts to (it publishes none: signals travel on their own stream):
- `user.erased`: forget the user's profile, archived signals and model rows;
- `booking.confirmed`: a `booking` signal of the guest, from the booking's own event, so the
  booking path is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import structlog

from staybook.kernel.consumers import ReplicaSubscription, Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime
from staybook.personalization import jobs, service
from staybook.personalization.archive import SignalArchive
from staybook.personalization.profiles import Decay
from staybook.personalization.properties import PropertyFacts
from staybook.personalization.repository import MemoryProfileStore, ProfileStore, RedisProfileStore
from staybook.personalization.rerank import ProfileRanker
from staybook.personalization.service import (
    Personalization,
    apply_catalog_event,
    flush_served_searches,
    load_facts,
    observe_search,
    reload_model,
)
from staybook.personalization.stream import InProcessSignalLog, NatsSignalLog, SignalLog
from staybook.search.bootstrap import search_deps

log = structlog.get_logger("staybook.personalization")


def build(runtime: Runtime) -> Personalization:
    settings = runtime.settings
    own = settings.personalization
    if runtime.redis is not None:
        store: ProfileStore = RedisProfileStore(runtime.redis, settings.redis_key_prefix + "pz:", own)
    else:
        store = MemoryProfileStore(own)
    if settings.nats_url:
        signal_log: SignalLog = NatsSignalLog(
            settings.nats_url,
            settings.bus_namespace,
            max_age_seconds=own.stream_max_age_days * 86_400,
            duplicate_window_seconds=own.stream_duplicate_window_seconds,
            name=f"{settings.service_name}-signals@{settings.pod}",
        )
    else:
        signal_log = InProcessSignalLog()
    return Personalization(
        settings=own,
        secret=settings.secret_key.get_secret_value(),
        facts=PropertyFacts(),
        store=store,
        signal_log=signal_log,
        archive=SignalArchive(own.archive_dir),
        decay=Decay.of(own),
    )


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[Personalization]:
    """Builds this process's parts, loads the facts and the served model, watches for new versions."""
    deps = build(runtime)
    await deps.signal_log.start()
    if isinstance(deps.signal_log, NatsSignalLog):
        runtime.add_ready_check("signals", deps.signal_log.ping)

    # Started here, before the facts are read, so no catalog event falls between the read and it.
    await runtime.consumers.start(
        [ReplicaSubscription("personalization.facts", "staybook.catalog.>", on_catalog_event, deps=deps)]
    )
    try:
        deps.facts.put((await load_facts(runtime)).all())
    except Exception as error:  # the API still starts; signals naming properties are refused until loaded
        log.warning("property facts not loaded", error_type=type(error).__name__)
    reload_model(deps, runtime.settings.personalization.model_dir)
    runtime.wiring.add("personalization", jobs=jobs.jobs(deps.settings))
    # Personalisation sits above search: it hears of every search and orders the results.
    searches = deps.search = search_deps(runtime)
    searches.observers.append(lambda query: observe_search(deps, query))
    searches.ranker = ProfileRanker(deps)
    stop = asyncio.Event()
    background = [
        asyncio.get_running_loop().create_task(_watch_model(runtime, deps, stop), name="personalization-model"),
        asyncio.get_running_loop().create_task(_flush_searches(deps, stop), name="personalization-searches"),
    ]
    try:
        yield deps
    finally:
        stop.set()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await deps.signal_log.close()
        await deps.store.close()


async def on_catalog_event(envelope: EventEnvelope, deps: Personalization) -> None:
    apply_catalog_event(deps.facts, envelope)


async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork, deps: Personalization) -> None:
    await service.erase_user(deps, deps.settings.model_dir, uuid.UUID(str(envelope.payload["user_id"])))


async def on_booking_confirmed(envelope: EventEnvelope, uow: UnitOfWork, deps: Personalization) -> None:
    await service.record_booking(deps, envelope)


SUBSCRIPTIONS = [
    Subscription("personalization.user.erased", "staybook.identity.user.erased", on_user_erased),
    Subscription("personalization.booking.confirmed", "staybook.booking.booking.confirmed", on_booking_confirmed),
]


async def _watch_model(runtime: Runtime, deps: Personalization, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(5)
        await asyncio.to_thread(reload_model, deps, runtime.settings.personalization.model_dir)


async def _flush_searches(deps: Personalization, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(deps.settings.search_signals_flush_seconds)
        if deps.served_searches:
            try:
                await flush_served_searches(deps)
            except Exception as error:
                log.warning("served searches not published", error_type=type(error).__name__)
