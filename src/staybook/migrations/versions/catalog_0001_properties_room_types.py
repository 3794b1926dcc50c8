"""catalog: properties and room types

Revision ID: catalog_0001
Revises: 0001_kernel
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from staybook.kernel.orm import UTCDateTime

revision: str = "catalog_0001"
down_revision: str | Sequence[str] | None = "0001_kernel"
branch_labels: str | Sequence[str] | None = ("catalog",)
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "properties",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("property_type", sa.String(30), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("city", sa.String(120), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amenities", JSON, nullable=False),
        sa.Column("check_in_time", sa.String(5), nullable=False),
        sa.Column("check_out_time", sa.String(5), nullable=False),
        sa.Column("cancellation_policy", sa.String(20), nullable=False),
        sa.Column("rating_tenths", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180", name="ck_properties_coordinates"
        ),
        sa.CheckConstraint("status IN ('active', 'archived')", name="ck_properties_status"),
    )
    op.create_index("ix_properties_host_id", "properties", ["host_id"])
    op.create_index("ix_properties_city_country", "properties", ["country", "city"])
    op.create_table(
        "room_types",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "property_id",
            sa.Uuid(),
            sa.ForeignKey("properties.id", name="fk_room_types_property_id_properties"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_guests", sa.Integer(), nullable=False),
        sa.Column("beds", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("base_price_amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "max_guests >= 1 AND beds >= 0 AND units >= 0 AND base_price_amount >= 0", name="ck_room_types_positive"
        ),
        sa.CheckConstraint("status IN ('active', 'archived')", name="ck_room_types_status"),
    )
    op.create_index("ix_room_types_property_id", "room_types", ["property_id"])


def downgrade() -> None:
    op.drop_table("room_types")
    op.drop_table("properties")
