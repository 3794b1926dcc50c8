"""Data residency: a user's sealed personal data is stored in their region's own database.

`settings.regions` maps a residency region to a database (`STAYBOOK_REGIONS__US__DATABASE_URL`).
For a user whose `users.region` is one of them, the sealed record (the wrapped data key, the
ciphertext of email, name, phone, date of birth and address, and the TOTP secret) is a row of
`user_personal_data` in that region's database, and the same columns of `users` stay NULL: the
home database, its backups and every standby of it (the other region reads one) hold the
account, never the data nor the key that opens it. A user of a region without a database of its
own keeps the record in `users`, as every user does in the one-region default (the demo).

It is done where the ORM loads and flushes `User` rows, so the use cases read and seal
`user.pii` the same way in both cases: loading a routed user fills those attributes from the
region (one primary-key read there), and a flush that changed them writes them to the region
(after the user's row was written, before the home database commits; a commit that fails after
that leaves an unreachable row in the right region) and writes NULL at home. A user who moves to
another region has their record moved with the same flush.

ORM events are passed no dependencies, so the stores are found by the engine a session uses:
`install(db, stores)` registers them for the database's primary and standby engines. The identity
lifespan builds them (`Credentials.build`) and disposes of them at shutdown.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from sqlalchemy import Engine, delete, event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import attributes

from staybook.identity.models import RegionalPersonalData, User
from staybook.kernel.db import Database, create_engine
from staybook.kernel.orm import utcnow
from staybook.kernel.settings import Settings

# The attributes of `User` that hold the sealed record.
SEALED = ("pii_key_id", "pii_wrapped_key", "pii", "totp_secret")
_PENDING = "residency.pending"
_TABLE = RegionalPersonalData.__table__


class RegionalStores:
    """One engine per region that has a database of its own."""

    def __init__(self, settings: Settings) -> None:
        self.engines: dict[str, AsyncEngine] = {
            region: create_engine(
                settings.model_copy(update={"database_url": config.database_url, "database_replica_url": None})
            )
            for region, config in settings.regions.items()
        }

    def routed(self, region: str | None) -> bool:
        return region in self.engines

    # The three below run inside the ORM's load or flush (a greenlet of the async session), so
    # they use each engine's synchronous face on its async driver.

    def read(self, region: str, user_id: uuid.UUID) -> dict[str, Any]:
        with self.engines[region].sync_engine.connect() as conn:
            row = conn.execute(select(*(_TABLE.c[name] for name in SEALED)).where(_TABLE.c.user_id == user_id))
            found = row.mappings().first()
        return dict(found) if found else dict.fromkeys(SEALED)

    def write(self, region: str, user_id: uuid.UUID, values: dict[str, Any]) -> None:
        with self.engines[region].sync_engine.begin() as conn:
            if all(value is None for value in values.values()):
                conn.execute(delete(_TABLE).where(_TABLE.c.user_id == user_id))
                return
            changed = conn.execute(
                update(_TABLE).where(_TABLE.c.user_id == user_id).values(**values, updated_at=utcnow())
            )
            if changed.rowcount == 0:
                conn.execute(insert(_TABLE).values(user_id=user_id, **values, updated_at=utcnow()))

    def forget(self, region: str, user_id: uuid.UUID) -> None:
        with self.engines[region].sync_engine.begin() as conn:
            conn.execute(delete(_TABLE).where(_TABLE.c.user_id == user_id))

    async def dispose(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, RegionalStores] = weakref.WeakKeyDictionary()


def install(db: Database, stores: RegionalStores) -> RegionalStores:
    """Registers `stores` for the database's engines (the ORM hooks find them by engine)."""
    for engine in (db.engine, db.replica_engine):
        if engine is not None and stores.engines:
            _BY_ENGINE[engine.sync_engine] = stores
    return stores


def _stores_of(bind) -> RegionalStores | None:
    engine = getattr(bind, "engine", bind)
    return _BY_ENGINE.get(engine) if engine is not None else None


# ---------------------------------------------------------------------------- ORM hooks


def _fill(target: User, stores: RegionalStores) -> None:
    region = target.__dict__.get("region")
    if not stores.routed(region) or any(target.__dict__.get(name) is not None for name in SEALED):
        return
    for name, value in stores.read(region, target.id).items():
        attributes.set_committed_value(target, name, value)


@event.listens_for(User, "load")
def _on_load(target: User, context) -> None:
    stores = _stores_of(context.session.get_bind())
    if stores is not None:
        _fill(target, stores)


@event.listens_for(User, "refresh")
def _on_refresh(target: User, context, attrs) -> None:
    _on_load(target, context)


def _old_region(target: User) -> str | None:
    history = attributes.get_history(target, "region")
    return history.deleted[0] if history.deleted else None


@event.listens_for(User, "before_insert")
@event.listens_for(User, "before_update")
def _before_write(mapper, connection, target: User) -> None:
    stores = _stores_of(connection)
    if stores is None:
        return
    moved_from = _old_region(target)
    changed = any(attributes.get_history(target, name).has_changes() for name in SEALED)
    state = attributes.instance_state(target)
    if stores.routed(target.region):
        if changed or moved_from is not None or state.key is None:
            values = {name: getattr(target, name) for name in SEALED}
            state.info[_PENDING] = (target.region, values, moved_from)
            for name in SEALED:
                setattr(target, name, None)  # NULL at home
    elif moved_from is not None and stores.routed(moved_from):
        # Back to the home database: the record read from the region is written here.
        for name in SEALED:
            attributes.flag_modified(target, name)
        state.info[_PENDING] = (None, {}, moved_from)


@event.listens_for(User, "after_insert")
@event.listens_for(User, "after_update")
def _after_write(mapper, connection, target: User) -> None:
    stores = _stores_of(connection)
    state = attributes.instance_state(target)
    pending = state.info.pop(_PENDING, None)
    if stores is None or pending is None:
        return
    region, values, moved_from = pending
    if region is not None:
        stores.write(region, target.id, values)
        for name, value in values.items():
            attributes.set_committed_value(target, name, value)
    if moved_from is not None and moved_from != region and stores.routed(moved_from):
        stores.forget(moved_from, target.id)


# ---------------------------------------------------------------------------- key rotation


async def rotate_keys(stores: RegionalStores, rewrap, active_key_id: str, batch_size: int = 500) -> int:
    """Re-wraps the data keys each region's database holds under an older master key."""
    total = 0
    for engine in stores.engines.values():
        while True:
            async with engine.begin() as conn:
                query = (
                    select(_TABLE.c.user_id, _TABLE.c.pii_key_id, _TABLE.c.pii_wrapped_key)
                    .where(_TABLE.c.pii_key_id.is_not(None), _TABLE.c.pii_key_id != active_key_id)
                    .order_by(_TABLE.c.user_id)
                    .limit(batch_size)
                )
                if engine.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = (await conn.execute(query)).all()
                for user_id, key_id, wrapped in rows:
                    new_key_id, new_wrapped = rewrap(key_id, wrapped)
                    await conn.execute(
                        update(_TABLE)
                        .where(_TABLE.c.user_id == user_id)
                        .values(pii_key_id=new_key_id, pii_wrapped_key=new_wrapped, updated_at=utcnow())
                    )
            total += len(rows)
            if len(rows) < batch_size:
                break
    return total
