"""Tables of the catalog context: what hosts sell."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from staybook.kernel.orm import Base, JSONType, UTCDateTime, utcnow
from staybook.kernel.states import State


class ListingStatus(State):
    """A property's or a room type's status: on offer, or taken off sale for good (bookings stay)."""

    ACTIVE = "active"
    ARCHIVED = "archived"


def on_sale(room_type_status: str, property_status: str) -> bool:
    """A room type is sold only while it and its property are both active."""
    return room_type_status == ListingStatus.ACTIVE and property_status == ListingStatus.ACTIVE


class Property(Base):
    __tablename__ = "properties"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The owning host's user id (identity context; no cross-context foreign key).
    host_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    property_type: Mapped[str] = mapped_column(String(30), default="hotel")
    address: Mapped[str] = mapped_column(String(300))
    city: Mapped[str] = mapped_column(String(120))
    country: Mapped[str] = mapped_column(String(2))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    amenities: Mapped[list] = mapped_column(JSONType, default=list)
    check_in_time: Mapped[str] = mapped_column(String(5), default="15:00")
    check_out_time: Mapped[str] = mapped_column(String(5), default="11:00")
    cancellation_policy: Mapped[str] = mapped_column(String(20), default="moderate")
    # Average guest rating in tenths (0-50 = 0.0-5.0 stars); null until rated.
    rating_tenths: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default=ListingStatus.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180", name="coordinates"),
        CheckConstraint(ListingStatus.check_constraint("status"), name="status"),
        Index("ix_properties_city_country", "country", "city"),
    )


class RoomType(Base):
    __tablename__ = "room_types"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    property_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("properties.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    max_guests: Mapped[int] = mapped_column(Integer)
    beds: Mapped[int] = mapped_column(Integer, default=1)
    # How many identical rooms of this type the property has.
    units: Mapped[int] = mapped_column(Integer)
    base_price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default=ListingStatus.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("max_guests >= 1 AND beds >= 0 AND units >= 0 AND base_price_amount >= 0", name="positive"),
        CheckConstraint(ListingStatus.check_constraint("status"), name="status"),
    )


class PhotoStatus(State):
    """A photo waits for its variants (processing), has them (ready), or could not be rendered (failed)."""

    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Photo(Base):
    """An uploaded picture of a property: the original (kept private, EXIF intact) and its public variants."""

    __tablename__ = "photos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    property_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("properties.id"), index=True)
    original_key: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default=PhotoStatus.PROCESSING.value)
    # [{name, key, width, height, content_type}], written by the variant worker.
    variants: Mapped[list] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint(PhotoStatus.check_constraint("status"), name="status"),)
