"""Email: MIME composition (text + HTML, calendar attachment) and the two ways out of the
process, real SMTP (aiosmtplib) or, in the demo, `.eml` files in a sink directory.
"""

from __future__ import annotations

import binascii
import functools
import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time
from email.charset import QP, Charset
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from icalendar import Calendar, Timezone
from icalendar import Event as CalendarEvent

from staybook.kernel.contact import is_valid_email
from staybook.kernel.orm import utcnow
from staybook.kernel.settings import NotificationSettings
from staybook.notifications.policy import zone
from staybook.notifications.providers import PermanentFailure, TemporaryFailure
from staybook.notifications.templates import RenderedMessage


def stay_calendar(booking: dict[str, Any]) -> bytes:
    """The stay as one calendar event: from check-in time on the arrival day to check-out time
    on the departure day, in the property's own time zone (TZID), at its address."""
    prop = booking["property"]
    tz = zone(prop.get("timezone"))
    start = datetime.combine(date.fromisoformat(booking["check_in"]), time.fromisoformat(prop["check_in_time"]), tz)
    end = datetime.combine(date.fromisoformat(booking["check_out"]), time.fromisoformat(prop["check_out_time"]), tz)
    calendar = Calendar()
    calendar.add("prodid", "-//staybook//notifications//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = CalendarEvent()
    event.add("uid", f"{booking['booking_id']}@staybook")
    event.add("dtstamp", utcnow())
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", f"{prop['name']} ({booking['reference']})")
    event.add("location", ", ".join(p for p in (prop.get("address"), prop.get("city"), prop.get("country")) if p))
    event.add("description", f"{booking['room_type']['name']}, {booking['guests']} guests, ref {booking['reference']}")
    calendar.add_component(event)
    ical = calendar.to_ical()
    if f";TZID={tz.key}:".encode() not in ical:
        return ical  # UTC times are written with Z and need no zone definition
    # The zone's definition goes in front of the closing line (RFC 5545 allows any component order).
    return ical.removesuffix(_CALENDAR_END) + _vtimezone(tz.key, start.year, end.year) + _CALENDAR_END


_CALENDAR_END = b"END:VCALENDAR\r\n"


@functools.lru_cache(maxsize=256)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    """VTIMEZONE of `tzid` with the transitions from the year before the stay to the year after.

    Built once per zone and years: computing it was half the calendar's cost (the default
    span of 1970-2038 cost ~15 ms a message)."""
    calendar = Calendar()
    calendar.add_component(
        Timezone.from_tzid(tzid, first_date=date(first_year - 1, 1, 1), last_date=date(last_year + 1, 12, 31))
    )
    lines = calendar.to_ical().split(b"\r\n")
    return b"\r\n".join(lines[1:-2]) + b"\r\n"  # without BEGIN/END:VCALENDAR


@dataclass(frozen=True)
class OutgoingMail:
    """A composed message: envelope sender and recipient plus the bytes that go over SMTP."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


# Quoted-printable keeps mostly-ASCII text readable and about a third smaller than base64.
_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
_UTF8.body_encoding = QP


def compose_email(
    rendered: RenderedMessage,
    *,
    sender: str,
    recipient: str,
    recipient_name: str | None = None,
    unsubscribe_url: str | None = None,
    calendar: bytes | None = None,
) -> OutgoingMail:
    """multipart/alternative (text, then HTML); wrapped in multipart/mixed when a calendar is attached.

    Written out directly rather than through `email.mime` and its generator, whose header
    folding alone cost ~1 ms a message, most of the sender's CPU per mail: bodies are
    quoted-printable (binascii, in C), headers are plain when short ASCII and RFC 2047
    encoded words (email.header) otherwise. Lines end in LF like `as_bytes()`; SMTP clients
    send them as CRLF.
    """
    if not is_valid_email(recipient):
        raise PermanentFailure(f"not a valid email address: {recipient!r}")
    sender_name, sender_address = _sender(sender)
    message_id = make_msgid(domain=sender_address.rpartition("@")[2] or "staybook.localhost")
    # One random boundary per message: "=_" never occurs in quoted-printable text.
    outer = f"=_{secrets.token_hex(12)}"
    alternative = f"=_{secrets.token_hex(12)}" if calendar is not None else outer
    body = [
        f"--{alternative}\n",
        *_text_part("plain", rendered.text),
        f"\n--{alternative}\n",
        *_text_part("html", rendered.html),
        f"\n--{alternative}--\n",
    ]
    if calendar is not None:
        body = [
            f"--{outer}\n",
            f'Content-Type: multipart/alternative; boundary="{alternative}"\n\n',
            *body,
            f"\n--{outer}\n",
            *_text_part(
                "calendar",
                calendar.decode(),
                '; method="PUBLISH"',
                'Content-Disposition: attachment; filename="stay.ics"\n',
            ),
            f"\n--{outer}--\n",
        ]
    name = " ".join((recipient_name or "").split())  # no line breaks from stored contexts into headers
    headers = [
        f'Content-Type: multipart/{"mixed" if calendar is not None else "alternative"}; boundary="{outer}"',
        "MIME-Version: 1.0",
        _header("Subject", rendered.subject),
        f"From: {sender_name}",
        f"To: {_address_header(name, recipient)}",
        f"Date: {formatdate(localtime=False, usegmt=True)}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-generated",
    ]
    if unsubscribe_url:
        # RFC 8058 one-click: mail clients POST to the URL without opening a page.
        headers += [f"List-Unsubscribe: <{unsubscribe_url}>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    data = "\n".join(headers) + "\n\n" + "".join(body)
    return OutgoingMail(message_id, sender_address, recipient, data.encode())


def _address_header(name: str | None, address: str) -> str:
    """`Name <address>`; an internationalised address (josé@example.com) is written as UTF-8
    (RFC 6532), which the SMTP server must accept with SMTPUTF8 (SmtpMailer asks for it)."""
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    return f"{Header(name, _UTF8).encode()} <{address}>" if name else f"<{address}>"


def _text_part(subtype: str, content: str, parameters: str = "", extra_headers: str = "") -> tuple[str, str]:
    encoded = binascii.b2a_qp(content.encode(), istext=True).decode("ascii")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{parameters}\n'
        f"Content-Transfer-Encoding: quoted-printable\n{extra_headers}\n",
        encoded,
    )


def _header(name: str, value: str) -> str:
    value = " ".join(value.split())
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}"
    return f"{name}: {Header(value, _UTF8, header_name=name).encode()}"


@functools.lru_cache(maxsize=8)
def _sender(value: str) -> tuple[str, str]:
    """The From header and the envelope sender of the configured sender address."""
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8"), address


class Mailer(Protocol):
    kind: str

    async def send(self, mail: OutgoingMail) -> str:
        """Hands the message on; returns its Message-ID. Raises Temporary/PermanentFailure."""


class SmtpMailer:
    """A real SMTP server. 5xx answers are permanent; 4xx, timeouts and refused connections are not."""

    kind = "smtp"

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    async def send(self, mail: OutgoingMail) -> str:
        s = self.settings
        try:
            await aiosmtplib.send(
                mail.data,
                sender=mail.sender,
                recipients=[mail.recipient],
                hostname=s.smtp_host,
                port=s.smtp_port,
                start_tls=s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.smtp_timeout_seconds,
                mail_options=None if mail.recipient.isascii() else ["SMTPUTF8"],
            )
        except aiosmtplib.SMTPNotSupported as error:
            raise PermanentFailure(f"the mail server cannot take this address (no SMTPUTF8): {error}") from error
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            failure = PermanentFailure if all(code >= 500 for code in codes) else TemporaryFailure
            raise failure(f"recipient refused: {'; '.join(str(r) for r in error.recipients)}") from error
        except aiosmtplib.SMTPResponseException as error:
            failure = PermanentFailure if error.code >= 500 else TemporaryFailure
            raise failure(f"SMTP {error.code} {error.message}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise TemporaryFailure(f"SMTP unavailable: {type(error).__name__}: {error}") from error
        return mail.message_id


class MailSink:
    """The demo's outbox for mail: each message becomes an `.eml` file that any mail client opens."""

    kind = "sink"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: OutgoingMail) -> str:
        name = f"{utcnow():%Y%m%dT%H%M%S%f}-{mail.message_id.strip('<>').split('@')[0]}.eml"
        # Written on the event loop: a few kilobytes into the page cache (no fsync, the demo's
        # sink is no durable store) cost less than handing each file to a thread.
        try:
            self._write(name, mail.data)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)  # first mail, or the folder was removed
            self._write(name, mail.data)
        return mail.message_id

    def _write(self, name: str, data: bytes) -> None:
        descriptor = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)


def create_mailer(settings: NotificationSettings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else MailSink(settings.mail_sink_dir)
