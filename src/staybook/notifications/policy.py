"""The rules of notifying, as pure functions: which types exist and who may switch them off,
which locale a message is written in, when SMS must wait, how retries back off, how a
recipient is hashed and checked. No I/O here, so all of it is unit-tested.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHANNELS = ("email", "sms", "push")
LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class NotificationType:
    name: str
    # Transactional mail (what the user must know about their booking or account) cannot be
    # switched off and carries no List-Unsubscribe header.
    transactional: bool
    # Whether the type has a short text for SMS and push, and whether SMS is on by default.
    short: bool = False
    sms_by_default: bool = False
    # Security alerts ignore SMS quiet hours: they are only useful at once.
    urgent: bool = False


TYPES: dict[str, NotificationType] = {
    t.name: t
    for t in (
        NotificationType("booking_held", transactional=False, short=True),
        NotificationType("booking_confirmed", transactional=True, short=True, sms_by_default=True),
        NotificationType("booking_payment_failed", transactional=True, short=True),
        NotificationType("booking_expired", transactional=False),
        NotificationType("booking_cancelled", transactional=True, short=True, sms_by_default=True),
        NotificationType("payment_refunded", transactional=True),
        NotificationType("host_new_booking", transactional=False, short=True),
        NotificationType("host_booking_cancelled", transactional=False),
        NotificationType("sign_in_alert", transactional=True, short=True, urgent=True),
    )
}


def channels_of(notification_type: NotificationType) -> tuple[str, ...]:
    return CHANNELS if notification_type.short else ("email",)


def default_enabled(notification_type: NotificationType, channel: str) -> bool:
    """Email is on for every type; SMS where the type says so; push is opt-in."""
    if channel == "email":
        return True
    if channel == "sms":
        return notification_type.sms_by_default
    return False


def is_enabled(notification_type: NotificationType, channel: str, explicit: bool | None) -> bool:
    """A stored choice wins, except that transactional email is always sent."""
    if channel not in channels_of(notification_type):
        return False
    if channel == "email" and notification_type.transactional:
        return True
    return default_enabled(notification_type, channel) if explicit is None else explicit


def resolve_locale(requested: str | None) -> str:
    """'de-AT' -> 'de'; anything without templates falls back to English."""
    if not requested:
        return DEFAULT_LOCALE
    language = requested.replace("_", "-").split("-", 1)[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_end(now: datetime, timezone: str | None, start_hour: int, end_hour: int) -> datetime | None:
    """When `now` falls in the recipient's local quiet hours, the (UTC-aware) moment they end; else None.

    start > end spans midnight (22 -> 8); start == end means no quiet hours.
    """
    if start_hour == end_hour:
        return None
    local = now.astimezone(zone(timezone))
    hour = local.hour
    quiet = start_hour <= hour < end_hour if start_hour < end_hour else (hour >= start_hour or hour < end_hour)
    if not quiet:
        return None
    end_day = local.date() if hour < end_hour else local.date() + timedelta(days=1)
    end_local = datetime.combine(end_day, time(end_hour), tzinfo=local.tzinfo)
    return end_local.astimezone(now.tzinfo)


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Exponential backoff with jitter after the `attempt`-th failure: in [ceiling/2, ceiling]."""
    ceiling = min(max_seconds, base_seconds * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def normalise_recipient(channel: str, recipient: str) -> str:
    return recipient.strip().lower() if channel == "email" else recipient.strip()


def recipient_hash(key: bytes, channel: str, recipient: str) -> str:
    """Keyed, so a stored hash cannot be reversed by hashing a list of addresses without the key."""
    message = f"{channel}:{normalise_recipient(channel, recipient)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def unsubscribe_token(key: bytes, user_id: str, type_name: str) -> str:
    """A link token naming who opts out of what, signed so nobody can unsubscribe someone else."""
    subject = base64.urlsafe_b64encode(f"{user_id}:{type_name}".encode()).decode().rstrip("=")
    signature = hmac.new(key, b"unsubscribe:" + subject.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{subject}.{signature}"


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, str] | None:
    """(user_id, type) from a genuine token, None from anything else."""
    subject, _, signature = token.partition(".")
    if not token.isascii():  # a genuine token is base64 and hex; compare_digest refuses other text
        return None
    expected = hmac.new(key, b"unsubscribe:" + subject.encode(), hashlib.sha256).hexdigest()[:32]
    if not signature or not hmac.compare_digest(signature, expected):
        return None
    try:
        user_id, _, type_name = base64.urlsafe_b64decode(subject + "=" * (-len(subject) % 4)).decode().partition(":")
    except ValueError:
        return None
    return (user_id, type_name) if type_name in TYPES else None
