"""Tables of the inventory context: one row per room type per night."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, UTCDateTime


class RoomNight(Base):
    """How many units of a room type exist, are held and are booked on one night, and its price.

    The CHECK constraint is the last line of defence against overselling: whatever a
    bug or a race does, the database refuses `held + booked > total`.
    """

    __tablename__ = "room_nights"

    room_type_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    night: Mapped[date] = mapped_column(Date, primary_key=True)
    # Denormalised from the catalog so per-property calendars need no join across contexts.
    property_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    total: Mapped[int] = mapped_column(Integer)
    held: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    min_stay: Mapped[int] = mapped_column(Integer, default=1)
    # Closed: not for sale that night. Closed to arrival: a stay may include it but not start on it.
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_to_arrival: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        CheckConstraint("held >= 0 AND booked >= 0 AND total >= 0", name="non_negative"),
        CheckConstraint("held + booked <= total", name="no_oversell"),
        CheckConstraint("price_amount >= 0 AND min_stay >= 1", name="price_and_min_stay"),
        Index("ix_room_nights_property_night", "property_id", "night"),
    )


class CalendarFeed(Base):
    """The version of a room type's signed iCal export URL; rotating it bumps the version.

    The URL's token is an HMAC of (room type, version) under the platform's secret key, so the
    database holds no usable secret and a rotation revokes every URL handed out before it.
    A room type without a row is at version 0.
    """

    __tablename__ = "calendar_feeds"

    room_type_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime)
