"""TOTP (RFC 6238, via pyotp) and one-time recovery codes; pure functions, no I/O."""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp

STEP_SECONDS = 30
ISSUER = "staybook"
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud and typed by hand
_TOTP_CODE = re.compile(r"^\d{6}$")


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, *, last_step: int, now: float | None = None, drift: int = 1) -> int | None:
    """The time step `code` belongs to (within ±drift steps of now), if newer than `last_step`.

    Returning the step lets the caller remember it: a code is accepted once, so a
    code seen over someone's shoulder cannot be replayed in the same 30 seconds.
    """
    code = code.strip().replace(" ", "")
    if not _TOTP_CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    step_now = current_step(now)
    for step in range(step_now - drift, step_now + drift + 1):
        if step > last_step and hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def looks_like_totp(code: str) -> bool:
    return bool(_TOTP_CODE.fullmatch(code.strip().replace(" ", "")))


def new_recovery_codes(count: int) -> list[str]:
    """`count` codes like 'k7wq-m3xe-hp'; about 50 bits each."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


def normalise_recovery_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()
