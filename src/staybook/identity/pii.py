"""Envelope encryption of personal data, and the keyed hash that finds users by email.

Each user's personal data is sealed with AES-256-GCM under a data key of its
own; the data key is stored wrapped (AES-GCM) by a master key, together with
the master key's id. Rotating the master key re-wraps the small data keys, not
the data, and runs while the service serves: reads unwrap with whichever
master key a row names (the active one or one of `pii_previous_master_keys`).
Erasing a user destroys the wrapped data key, so copies of the ciphertext left
in backups become unreadable (crypto-shredding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
import uuid

import orjson
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from staybook.kernel.settings import Settings

log = structlog.get_logger("staybook.identity.pii")

_NONCE = 12
_WRAP_AAD = b"staybook/identity/data-key/"


class PiiKeyMissing(Exception):
    """A row names a master key id this process does not have."""


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"staybook-identity", info=purpose).derive(secret.encode())


def decode_key(value: str) -> bytes:
    """A 32-byte key from urlsafe base64 (padding optional)."""
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if len(raw) != 32:
        raise ValueError("PII master keys must be 32 bytes, urlsafe base64 encoded")
    return raw


def new_master_key() -> str:
    """A fresh master key in the format `STAYBOOK_IDENTITY__PII_MASTER_KEY` takes."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip("=")


def normalise_email(email: str) -> str:
    """Unicode NFKC, trimmed, lower-cased: the form that is unique and hashed."""
    return unicodedata.normalize("NFKC", email).strip().lower()


class PiiVault:
    """Seals and opens users' personal data; computes email lookup hashes."""

    def __init__(self, settings: Settings) -> None:
        identity = settings.identity
        secret = settings.secret_key.get_secret_value()
        if identity.pii_master_key is not None:
            active = decode_key(identity.pii_master_key.get_secret_value())
        else:
            if settings.environment == "production":
                raise ValueError("STAYBOOK_IDENTITY__PII_MASTER_KEY must be set in production")
            log.warning("PII master key derived from secret_key; set STAYBOOK_IDENTITY__PII_MASTER_KEY")
            active = _derive(secret, b"pii-master-key")
        self.active_key_id = identity.pii_master_key_id
        self.master_keys = {
            kid: decode_key(key.get_secret_value()) for kid, key in identity.pii_previous_master_keys.items()
        }
        self.master_keys[self.active_key_id] = active
        hash_key = identity.email_hash_key.get_secret_value() if identity.email_hash_key else None
        self.email_key = hash_key.encode() if hash_key else _derive(secret, b"email-hash-key")
        self.code_key = _derive(secret, b"recovery-code-key")

    # ------------------------------------------------------------------ hashes

    def email_hash(self, email: str) -> str:
        return hmac.new(self.email_key, normalise_email(email).encode(), hashlib.sha256).hexdigest()

    def code_hash(self, code: str) -> str:
        return hmac.new(self.code_key, code.encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ envelope

    def _master(self, key_id: str) -> bytes:
        try:
            return self.master_keys[key_id]
        except KeyError as error:
            raise PiiKeyMissing(f"PII master key {key_id!r} is not configured") from error

    def _wrap(self, data_key: bytes, key_id: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._master(key_id)).encrypt(nonce, data_key, _WRAP_AAD + key_id.encode())

    def _unwrap(self, wrapped: bytes, key_id: str) -> bytes:
        return AESGCM(self._master(key_id)).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _WRAP_AAD + key_id.encode())

    def new_data_key(self) -> tuple[str, bytes, bytes]:
        """(key id, wrapped data key, data key) for a new record."""
        data_key = AESGCM.generate_key(bit_length=256)
        return self.active_key_id, self._wrap(data_key, self.active_key_id), data_key

    def data_key(self, key_id: str, wrapped: bytes) -> bytes:
        return self._unwrap(wrapped, key_id)

    @staticmethod
    def encrypt(data_key: bytes, plaintext: bytes, owner: uuid.UUID) -> bytes:
        # The owner id is authenticated data: a ciphertext moved to another row does not open.
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(data_key).encrypt(nonce, plaintext, owner.bytes)

    @staticmethod
    def decrypt(data_key: bytes, sealed: bytes, owner: uuid.UUID) -> bytes:
        return AESGCM(data_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], owner.bytes)

    def seal_fields(self, data_key: bytes, fields: dict, owner: uuid.UUID) -> bytes:
        return self.encrypt(data_key, orjson.dumps(fields), owner)

    def open_fields(self, data_key: bytes, sealed: bytes, owner: uuid.UUID) -> dict:
        return orjson.loads(self.decrypt(data_key, sealed, owner))

    def rewrap(self, key_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """The same data key wrapped by the active master key."""
        return self.active_key_id, self._wrap(self._unwrap(wrapped, key_id), self.active_key_id)
