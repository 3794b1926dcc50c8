"""The outbox relay: moves committed events from the outbox table to the bus.

Each pass locks a batch of unpublished rows with `FOR UPDATE SKIP LOCKED`
(several relays split the work and never publish the same row concurrently),
publishes them, stamps `published_at` and commits. A crash between publish and
commit re-publishes the batch later with the same message ids: the broker's
de-duplication and the consumers' inboxes absorb it. On SQLite (one writer)
the lock clause is a no-op and one relay runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from sqlalchemy import Interval, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from staybook.kernel import metrics
from staybook.kernel.bus import Bus
from staybook.kernel.db import Database, Sql
from staybook.kernel.events import EventEnvelope
from staybook.kernel.models import InboxMessage, OutboxMessage, RelayTimeline
from staybook.kernel.orm import utcnow
from staybook.kernel.telemetry import record_publishes

log = structlog.get_logger("staybook.outbox")

_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.subject,
    OutboxMessage.event_type,
    OutboxMessage.payload,
    OutboxMessage.headers,
    OutboxMessage.created_at,
)
# Whether anything waits, in one round trip on the driver (the index on published_at answers it):
# what an idle relay runs per poll instead of a locking pass in a session of its own.
_ANY_PENDING = Sql("SELECT 1 AS pending FROM outbox WHERE published_at IS NULL LIMIT 1")
# The timeline of the WAL being written, read by the locking SELECT itself (no round trip of its own):
# a restore or a promotion starts a new one (see Bus.publish_batch).
_TIMELINE = func.substr(func.pg_walfile_name(func.pg_current_wal_lsn()), 1, 8).label("timeline")
FIRST_TIMELINE = "00000001"


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.1,
        republish_after_restore_seconds: float = 600,
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.republish_after_restore = timedelta(seconds=republish_after_restore_seconds)
        # The timeline this process has entered (enter_timeline); None until it has.
        self._timeline: str | None = None
        self._wakeup = asyncio.Event()
        # Fault injection for tests: called after publish, before the batch is marked sent.
        self.after_publish_hook = None

    def wake(self) -> None:
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """One pass: returns how many events were published (0 when none were waiting)."""
        async with self.db.sessions() as session, session.begin():
            timeline = (_TIMELINE,) if self.db.dialect == "postgresql" else ()
            query = (
                select(*_COLUMNS, *timeline)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            envelopes = [
                EventEnvelope(r.id, r.subject, r.event_type, r.created_at, r.payload, r.headers or {}) for r in rows
            ]
            ids = [r.id for r in rows]
            epoch = _epoch(rows[0].timeline if timeline else FIRST_TIMELINE)
            failure: Exception | None = None
            try:
                await self.bus.publish_batch(envelopes, epoch=epoch)
                record_publishes(envelopes, "nats" if self.bus.__class__.__name__ == "NatsBus" else "in-process")
            except Exception as error:
                # Record the attempt and commit it; the rows stay unpublished for the next pass.
                failure = error
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(attempts=OutboxMessage.attempts + 1, last_error=f"{type(error).__name__}: {error}"[:2000])
                )
            else:
                if self.after_publish_hook is not None:
                    await self.after_publish_hook(envelopes)
                now = utcnow()
                await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(published_at=now))
        if failure is not None:
            metrics.OUTBOX_PUBLISH_ERRORS.inc()
            raise failure
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        for envelope in envelopes:
            metrics.OUTBOX_LAG.observe(max(0.0, (now - envelope.occurred_at).total_seconds()))
        return len(rows)

    async def enter_timeline(self) -> int:
        """Notes the database's timeline; on one it has never relayed from, sends recent events again.

        A restore to an earlier point, or a promoted standby that missed the primary's last
        transactions, keeps outbox rows marked published whose consumers' effects (and inbox
        records) were rolled back with the database, and JetStream will not deliver those
        messages again. So the first relay on a new timeline marks the events published within
        `republish_after_restore` of the newest one unpublished: they go out with the new
        timeline's message ids, and the inboxes drop what was kept. Returns how many.
        """
        if self.db.dialect != "postgresql":
            return 0
        async with self.db.sessions() as session, session.begin():
            timeline = await session.scalar(select(_TIMELINE))
            if timeline == self._timeline:
                return 0
            entered = await session.execute(
                pg_insert(RelayTimeline).values(timeline=timeline, first_seen_at=utcnow()).on_conflict_do_nothing()
            )
            earlier = await session.scalar(
                select(func.count()).select_from(RelayTimeline).where(RelayTimeline.timeline != timeline)
            )
            republished = 0
            if entered.rowcount == 1 and earlier:
                newest = select(func.max(OutboxMessage.published_at)).scalar_subquery()
                result = await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.published_at > newest - literal(self.republish_after_restore, Interval()))
                    .values(published_at=None)
                )
                republished = result.rowcount or 0
        self._timeline = timeline
        if republished:
            log.warning(
                "new database timeline: recent events are published again",
                context={"timeline": timeline, "events": republished},
            )
        return republished

    async def has_pending(self) -> bool:
        """Whether unpublished rows may be waiting (always True on SQLite, where a pass is as cheap)."""
        if self.db.dialect != "postgresql":
            return True
        async with self.db.transaction(autocommit=True) as uow:
            return await uow.fetchrow(_ANY_PENDING) is not None

    async def backlog(self) -> int:
        """Unpublished events, and the age of the oldest (the relay's lag), as gauges."""
        async with self.db.sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.published_at.is_(None))
                )
            ).one()
        metrics.OUTBOX_BACKLOG.set(count or 0)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_OLDEST_AGE.set(max(0.0, age))
        return count or 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set; backs off (up to 5 s) while the bus or database is down."""
        failures = 0
        # After a poll that timed out with nothing to do, probe before taking a pass: an idle
        # worker polls ten times a second, and a pass (session, BEGIN, locking SELECT, COMMIT)
        # cost several times the probe. A wake-up (events committed in this process) or a full
        # batch goes straight to a pass.
        probe = False
        while not stop.is_set():
            try:
                if failures or self._timeline is None:
                    # At start, and after an outage that may have been a failover.
                    await self.enter_timeline()
                published = await self.publish_pending() if not probe or await self.has_pending() else 0
                if failures:
                    log.info("outbox relay recovered", context={"after_failures": failures})
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning(
                    "outbox publish failed; events stay in the outbox",
                    error_type=type(error).__name__,
                    context={"error": str(error), "retry_in_seconds": delay},
                )
                probe = False
                await _sleep_until(stop, delay)
                continue
            probe = False
            if published < self.batch_size:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    probe = published == 0


def _epoch(timeline: str) -> str:
    """'' on the first timeline (message ids as they always were), else the timeline's id."""
    return "" if timeline == FIRST_TIMELINE else f"tl{timeline}"


async def purge_handled(db: Database, retention: timedelta) -> tuple[int, int]:
    """Deletes published outbox rows and inbox records older than the retention window."""
    cutoff = utcnow() - retention
    async with db.unit_of_work() as uow:
        outbox = await uow.session.execute(
            delete(OutboxMessage).where(OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < cutoff)
        )
        inbox = await uow.session.execute(delete(InboxMessage).where(InboxMessage.handled_at < cutoff))
    return outbox.rowcount or 0, inbox.rowcount or 0


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
