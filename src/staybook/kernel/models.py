"""The kernel's own tables: the outbox that carries events out, the inbox that de-duplicates them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow


class OutboxMessage(Base):
    """An event written in the same transaction as the change it announces.

    The relay publishes unpublished rows in `created_at` order and stamps
    `published_at`; the row id is the bus message id, so a re-publish after a
    crash is dropped by the broker's de-duplication and by consumers' inboxes.
    """

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict] = mapped_column(JSONType)
    headers: Mapped[dict] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        # The relay's only query: unpublished rows, oldest first. Partial, so it stays tiny.
        Index(
            "ix_outbox_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )


class InboxMessage(Base):
    """Events a consumer has handled, written in the handler's transaction (effectively-once)."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(120), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DeadLetter(Base):
    """An event a consumer gave up on after its retries, kept for inspection and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    consumer: Mapped[str] = mapped_column(String(120), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    subject: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[dict] = mapped_column(JSONType)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RelayTimeline(Base):
    """A database history (PostgreSQL timeline) the outbox relay has published from.

    A restore or a promotion starts a timeline this table (restored with the database) has
    never seen: that is how the relay knows that consumers' records of recent events may have
    been rolled back, and sends those events again (OutboxRelay.enter_timeline).
    """

    __tablename__ = "relay_timelines"

    timeline: Mapped[str] = mapped_column(String(8), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
