"""Domain events and the envelope they travel in.

A context declares its events as subclasses of `Event` in its `events.py`:

    class BookingHeld(Event):
        context: ClassVar[str] = "booking"
        event_type: ClassVar[str] = "booking.held"
        booking_id: UUID
        ...

They travel on subject `staybook.<context>.<name>` with the outbox row id as
message id. Consumers receive an `EventEnvelope` (plain data, no classes), so a
consumer in one context never imports another context's event classes' internals
beyond the documented payload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.telemetry import current_trace_headers

SUBJECT_PREFIX = "staybook"


def subject_for(context: str, name: str) -> str:
    return f"{SUBJECT_PREFIX}.{context}.{name}"


class Event(BaseModel):
    """Something that happened. Immutable; its fields are the documented payload."""

    model_config = ConfigDict(frozen=True)

    context: ClassVar[str]
    event_type: ClassVar[str]

    @classmethod
    def subject(cls) -> str:
        return subject_for(cls.context, cls.event_type)

    def outbox_row(self) -> dict[str, Any]:
        return {
            "id": new_id(),
            "subject": self.subject(),
            "event_type": self.event_type,
            "payload": self.model_dump(mode="json"),
            "headers": current_trace_headers(),
            "created_at": utcnow(),
            "published_at": None,
            "attempts": 0,
        }


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """What goes over the bus: id (= outbox id), subject, type, time, payload and trace headers."""

    id: uuid.UUID
    subject: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "id": str(self.id),
                "subject": self.subject,
                "type": self.type,
                "occurred_at": self.occurred_at.isoformat(),
                "payload": self.payload,
                "headers": self.headers,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> EventEnvelope:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EventEnvelope:
        return cls(
            id=uuid.UUID(raw["id"]),
            subject=raw["subject"],
            type=raw["type"],
            occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            payload=raw.get("payload") or {},
            headers=raw.get("headers") or {},
        )

    @property
    def context(self) -> str:
        return self.subject.split(".", 2)[1]

    @classmethod
    def of(cls, event: Event) -> EventEnvelope:
        """An envelope for an event that never went through the outbox (tests, previews)."""
        row = event.outbox_row()
        return cls(row["id"], row["subject"], row["event_type"], row["created_at"], row["payload"], row["headers"])
