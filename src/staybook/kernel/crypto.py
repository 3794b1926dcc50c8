"""Personal data sealed at rest outside identity's vault: a booking's guest details, notification
recipients, idempotent answers that echo them.

Identity keeps each user's own record under a data key of its own (identity/pii.py). Every other
store seals personal fields with this module, under a key derived from the same master keys
(`identity.pii_master_key` and `identity.pii_previous_master_keys`), so one secret and one
rotation cover the platform. A sealed value is text, so it fits the JSON and text columns it
replaces:

    pd1.<master key id>.<urlsafe base64 of nonce + AES-256-GCM ciphertext>

The purpose ("bookings.guest", "notifications.recipient") is authenticated data: a value copied
into another column does not open there. Rotation re-seals values under the active key
(`reseal`); values sealed under a key this process no longer has raise SealedKeyMissing.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update

from staybook.kernel.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Column

    from staybook.kernel.db import Database

PREFIX = "pd1"
_NONCE = 12


class SealedKeyMissing(Exception):
    """A value names a master key id this process does not have."""


def _decode_master(value: str) -> bytes:
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if len(raw) != 32:
        raise ValueError("PII master keys must be 32 bytes, urlsafe base64 encoded")
    return raw


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"staybook-personal-data", info=info).derive(material)


class Sealer:
    """Seals and opens personal fields with the platform's personal-data key."""

    def __init__(self, settings: Settings) -> None:
        identity = settings.identity
        if identity.pii_master_key is not None:
            active = _decode_master(identity.pii_master_key.get_secret_value())
        elif settings.environment == "production":
            raise ValueError("STAYBOOK_IDENTITY__PII_MASTER_KEY must be set in production")
        else:
            # The demo and tests: derived from secret_key, as identity's vault does.
            active = _derive(settings.secret_key.get_secret_value().encode(), b"pii-master-key")
        previous = identity.pii_previous_master_keys
        masters = {kid: _decode_master(key.get_secret_value()) for kid, key in previous.items()}
        masters[identity.pii_master_key_id] = active
        self.active_key_id = identity.pii_master_key_id
        self._keys = {kid: AESGCM(_derive(master, b"sealed-fields/v1")) for kid, master in masters.items()}

    def seal(self, value: Any, purpose: str) -> str:
        """`value` (anything JSON can hold) as one sealed string."""
        nonce = os.urandom(_NONCE)
        ciphertext = self._keys[self.active_key_id].encrypt(nonce, orjson.dumps(value), purpose.encode())
        return f"{PREFIX}.{self.active_key_id}.{base64.urlsafe_b64encode(nonce + ciphertext).decode()}"

    def open(self, sealed: str, purpose: str) -> Any:
        key_id, blob = _parts(sealed)
        try:
            key = self._keys[key_id]
        except KeyError:
            raise SealedKeyMissing(f"personal-data key {key_id!r} is not configured") from None
        raw = base64.urlsafe_b64decode(blob)
        return orjson.loads(key.decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode()))

    def is_current(self, sealed: str) -> bool:
        return _parts(sealed)[0] == self.active_key_id

    def reseal(self, sealed: str, purpose: str) -> str | None:
        """The value sealed under the active key, or None if it already is."""
        return None if self.is_current(sealed) else self.seal(self.open(sealed, purpose), purpose)


async def reseal_column(db: Database, key: Column, column: Column, purpose: str, batch_size: int = 500) -> int:
    """Re-seals, under the active key, every value of `column` sealed under another one (a text
    column, or a JSON column holding `{"sealed": value}`); batches commit one by one, locking only
    their own rows (SKIP LOCKED on PostgreSQL), so the service keeps running. Returns the count."""
    sealer, total, after = db.sealer, 0, None
    while True:
        async with db.unit_of_work() as uow:
            query = select(key, column).where(column.is_not(None)).order_by(key).limit(batch_size)
            if after is not None:
                query = query.where(key > after)
            if db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await uow.session.execute(query)).all()
            for row_key, stored in rows:
                wrapped = isinstance(stored, dict)
                sealed = stored.get("sealed") if wrapped else stored
                if not is_sealed(sealed) or sealer.is_current(sealed):
                    continue
                fresh = sealer.seal(sealer.open(sealed, purpose), purpose)
                value = {**stored, "sealed": fresh} if wrapped else fresh
                await uow.session.execute(update(key.table).where(key == row_key).values({column.name: value}))
                total += 1
        if len(rows) < batch_size:
            return total
        after = rows[-1][0]


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX + ".")


def _parts(sealed: str) -> tuple[str, str]:
    prefix, key_id, blob = sealed.split(".", 2)
    if prefix != PREFIX:
        raise ValueError("not a sealed value")
    return key_id, blob
