"""Signals: what a batch looks like on the wire, how a client's batch is checked, signed session ids.

A client batch (JSON, maybe gzip) is checked signal by signal: one bad signal is
reported by its index and costs only itself. What passes becomes a
`SignalBatch`: compact msgpack (arrays, 16-byte ids), LZ4-compressed, one stream
message per batch, its batch id the stream's de-duplication id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import lz4.block
import msgspec

from staybook.kernel.dates import InvalidStay, stay_nights
from staybook.kernel.errors import Forbidden, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from staybook.kernel.settings import PersonalizationSettings
from staybook.personalization.schemas import (
    CLIENT_KINDS,
    ClientSignal,
    RejectedSignal,
    SearchSignal,
    SignalBatchIn,
    ViewSignal,
)

# Weights of one signal of each kind in profiles and popularity (a booking says the most).
KIND_WEIGHTS = {"search": 0.0, "view": 1.0, "click": 1.5, "dwell": 1.0, "wishlist": 3.0, "share": 3.0, "booking": 8.0}


class SignalRecord(msgspec.Struct, array_like=True, frozen=True):
    """One signal as the stream, the aggregator and the archive see it."""

    kind: str
    at_ms: int
    property_id: uuid.UUID | None = None
    city: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    check_in: date | None = None
    check_out: date | None = None
    guests: int | None = None
    amenities: tuple[str, ...] = ()
    property_type: str | None = None
    price: int | None = None  # nightly, minor units (views; bookings: total / nights)
    currency: str | None = None
    position: int | None = None
    query_id: str | None = None
    ms: int | None = None


class SignalBatch(msgspec.Struct, array_like=True, frozen=True):
    """Many signals of one subject (a user or an anonymous session): one stream message."""

    batch_id: uuid.UUID
    received_ms: int
    user_id: uuid.UUID | None
    session_id: str | None
    signals: list[SignalRecord]
    origin: str = "client"  # client | server

    @property
    def subject(self) -> str | None:
        """Whose profile the signals feed: `u:<user>` or `s:<session>` (None: no profile, e.g.
        server-side search signals of anonymous searches)."""
        if self.user_id is not None:
            return f"u:{self.user_id.hex}"
        if self.session_id is not None:
            return f"s:{self.session_id}"
        return None


_ENCODER = msgspec.msgpack.Encoder(uuid_format="bytes")
_DECODER = msgspec.msgpack.Decoder(SignalBatch)
_BATCH_HEADER = b"L1"  # LZ4 block with its size prepended; the first byte pair versions the format


def encode_batch(batch: SignalBatch) -> bytes:
    return _BATCH_HEADER + lz4.block.compress(_ENCODER.encode(batch), mode="fast")


def decode_batch(data: bytes) -> SignalBatch:
    if not data.startswith(_BATCH_HEADER):
        raise ValueError("not a signal batch")
    return _DECODER.decode(lz4.block.decompress(data[len(_BATCH_HEADER) :]))


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------------------- session ids


def _session_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"staybook personalization session v1", hashlib.sha256).digest()


def sign_session(secret: str, session_id: str, user_id: uuid.UUID | None = None) -> str:
    """`v1.<session>.<user or 0>.<mac>`: a session id only this platform can make."""
    subject = f"v1.{session_id}.{user_id.hex if user_id else '0'}"
    mac = hmac.new(_session_key(secret), subject.encode(), hashlib.sha256).digest()[:16]
    return f"{subject}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def new_session(secret: str, user_id: uuid.UUID | None = None) -> str:
    return sign_session(secret, uuid.uuid4().hex, user_id)


def verify_session(secret: str, token: str) -> tuple[str, uuid.UUID | None]:
    """(session id, bound user) of a signed session id; 403 for anything this platform did not sign."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or len(parts[1]) != 32:
        raise Forbidden("The session id is not one this platform issued", field="session")
    try:
        user_id = None if parts[2] == "0" else uuid.UUID(hex=parts[2])
        int(parts[1], 16)
    except ValueError as error:
        raise Forbidden("The session id is not one this platform issued", field="session") from error
    if not hmac.compare_digest(sign_session(secret, parts[1], user_id), token):
        raise Forbidden("The session id is not one this platform issued", field="session")
    return parts[1], user_id


# ---------------------------------------------------------------------------- checking a client batch


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent, gunzipped when `Content-Encoding: gzip`, refusing more than `limit` bytes."""
    if not encoding or encoding == "identity":
        return body
    if encoding.lower() != "gzip":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidInput("The body is not valid gzip", field="body") from error
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The inflated body exceeds {limit} bytes", max_bytes=limit)
    return data


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    envelope: SignalBatchIn
    signals: list[SignalRecord]
    rejected: list[RejectedSignal]


_ENVELOPE = msgspec.json.Decoder(SignalBatchIn)
_SIGNALS = msgspec.json.Decoder(list[ClientSignal])
_SIGNAL = msgspec.json.Decoder(ClientSignal)
_KIND_ONLY = msgspec.json.Decoder(dict)


def decode_envelope(data: bytes, max_signals: int) -> SignalBatchIn:
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError as error:
        raise InvalidInput(f"Invalid signal batch: {error}", field=_field(str(error))) from error
    except msgspec.DecodeError as error:
        raise InvalidInput("The body is not a JSON signal batch", field="body") from error
    if len(envelope.signals) > max_signals:
        raise PayloadTooLarge(
            f"A batch carries at most {max_signals} signals; this one has {len(envelope.signals)}. Split it.",
            max_signals=max_signals,
        )
    return envelope


def check_signals(
    envelope: SignalBatchIn,
    settings: PersonalizationSettings,
    now: datetime,
    property_exists: Callable[[uuid.UUID], bool],
) -> CheckedBatch:
    """The valid signals of a batch as records, and every other one with its index and reason."""
    raws = envelope.signals
    limit = settings.max_signal_bytes
    decoded: Sequence[ClientSignal | None]
    rejected: list[RejectedSignal] = []
    oversized = {index for index, raw in enumerate(raws) if len(raw) > limit}
    if not oversized:
        try:  # one decoder call for the whole list: the common case, every signal well formed
            decoded = _SIGNALS.decode(b"[" + b",".join(bytes(raw) for raw in raws) + b"]")
        except msgspec.ValidationError:
            decoded = [_decode_one(index, raw, rejected) for index, raw in enumerate(raws)]
    else:
        decoded = []
        for index, raw in enumerate(raws):
            if index in oversized:
                rejected.append(_rejected(index, 413, "", f"A signal is at most {limit} bytes"))
                decoded.append(None)
            else:
                decoded.append(_decode_one(index, raw, rejected))
    earliest = epoch_ms(now - timedelta(days=settings.max_age_days))
    latest = epoch_ms(now + timedelta(seconds=settings.max_future_seconds))
    records = []
    for index, signal in enumerate(decoded):
        if signal is None:
            continue
        at_ms = _at_ms(signal)
        problem = _semantic_problem(signal, at_ms, earliest, latest, property_exists)
        if problem is not None:
            status, field, message = problem
            rejected.append(_rejected(index, status, field, message))
            continue
        records.append(record_of(signal, at_ms))
    rejected.sort(key=lambda r: r.index)
    return CheckedBatch(envelope, records, rejected)


def _decode_one(index: int, raw: msgspec.Raw, rejected: list[RejectedSignal]) -> ClientSignal | None:
    try:
        return _SIGNAL.decode(raw)
    except msgspec.ValidationError as error:
        message = str(error)
        if message.endswith("`$.kind`"):
            message = f"Unknown signal kind; expected one of {', '.join(CLIENT_KINDS)}"
        rejected.append(_rejected(index, 422, _field(str(error)), message))
    except msgspec.DecodeError:
        rejected.append(_rejected(index, 422, "", "Not valid JSON"))
    return None


def _at_ms(signal: ClientSignal) -> int | None:
    """The signal's time in epoch milliseconds; None without a UTC offset."""
    return None if signal.at.tzinfo is None else epoch_ms(signal.at)


def _semantic_problem(signal: ClientSignal, at_ms: int | None, earliest: int, latest: int, property_exists):
    if at_ms is None:
        return 422, "at", "Timestamps need a UTC offset (e.g. 2026-12-02T08:00:00Z)"
    if at_ms > latest:
        return 422, "at", "The timestamp is in the future"
    if at_ms < earliest:
        return 422, "at", "The timestamp is older than the signals kept (7 days)"
    if isinstance(signal, SearchSignal):
        if signal.check_in and signal.check_out:
            try:
                stay_nights(signal.check_in, signal.check_out)
            except InvalidStay as refused:
                return 422, refused.field, refused.detail
        return None
    if not property_exists(signal.property_id):
        return 404, "property_id", "No such property"
    return None


def record_of(signal: ClientSignal, at_ms: int) -> SignalRecord:
    if isinstance(signal, SearchSignal):
        return SignalRecord(
            "search",
            at_ms,
            city=signal.city,
            country=signal.country.upper() if signal.country else None,
            lat=signal.lat,
            lon=signal.lon,
            check_in=signal.check_in,
            check_out=signal.check_out,
            guests=signal.guests,
            amenities=tuple(signal.amenities),
            property_type=signal.property_type,
            price=signal.price_max,
            query_id=signal.query_id,
        )
    kind = type(signal).__struct_config__.tag
    if isinstance(signal, ViewSignal):
        return SignalRecord(kind, at_ms, signal.property_id, price=signal.price, currency=signal.currency)
    return SignalRecord(
        kind,
        at_ms,
        signal.property_id,
        position=getattr(signal, "position", None),
        query_id=getattr(signal, "query_id", None),
        ms=getattr(signal, "ms", None),
    )


def _rejected(index: int, status: int, field: str, message: str) -> RejectedSignal:
    path = f"signals[{index}]" + (f".{field}" if field else "")
    return RejectedSignal(index=index, status=status, field=path, message=message)


def _field(message: str) -> str:
    """msgspec says `... - at `$.signals[0].at`` (unknown fields: `... field `x` - at `$``); the path
    without `$.`, ending in the unknown field's name."""
    start = message.rfind("`$")
    path = "" if start < 0 else message[start + 2 :].strip("`").lstrip(".")
    if message.startswith(("Object contains unknown field `", "Object missing required field `")):
        name = message.split("`", 2)[1]
        path = f"{path}.{name}" if path else name
    return path


def now_utc() -> datetime:
    return datetime.now(UTC)
