"""Notification rules, templates and message composition, without I/O."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from jinja2 import ChoiceLoader, DictLoader, UndefinedError

from staybook.kernel.contact import is_valid_e164, is_valid_email
from staybook.notifications.mail import compose_email, stay_calendar
from staybook.notifications.policy import (
    LOCALES,
    TYPES,
    is_enabled,
    quiet_hours_end,
    read_unsubscribe_token,
    recipient_hash,
    resolve_locale,
    retry_delay,
    unsubscribe_token,
)
from staybook.notifications.previews import SAMPLE_BOOKING, SAMPLES
from staybook.notifications.providers import PermanentFailure, SandboxProvider, TemporaryFailure
from staybook.notifications.templates import TemplateCheckFailed, Templates

KEY = b"k" * 32


def test_every_template_renders_in_every_locale():
    assert Templates().check() == len(TYPES) * len(LOCALES)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("type_name", sorted(TYPES))
def test_each_type_has_subject_text_html_and_short_text_where_needed(type_name, locale):
    message = Templates().render(type_name, locale, SAMPLES[type_name])
    assert message.subject and "\n" not in message.subject
    assert message.text.strip() and "{{" not in message.text
    assert message.html.startswith("<!DOCTYPE html>") and f'lang="{locale}"' in message.html
    assert (message.short is not None) == TYPES[type_name].short


def test_a_missing_value_fails_rendering_instead_of_printing_nothing():
    broken = dict(SAMPLES["booking_confirmed"])
    del broken["booking"]
    with pytest.raises(UndefinedError, match="booking"):
        Templates().render("booking_confirmed", "en", broken)


def test_check_reports_a_broken_template():
    templates = Templates()
    templates.environment.loader = ChoiceLoader(
        [
            DictLoader({"de/booking_held.txt": "{% block subject %}{{ no_such_value }}{% endblock %}"}),
            templates.environment.loader,
        ]
    )
    with pytest.raises(TemplateCheckFailed, match="de/booking_held"):
        templates.check()


def test_dates_and_money_follow_the_locale():
    english = Templates().render("booking_confirmed", "en", SAMPLES["booking_confirmed"])
    german = Templates().render("booking_confirmed", "de", SAMPLES["booking_confirmed"])
    assert "€429.00" in english.text and "Friday, March 12, 2027" in english.text
    assert (
        "429,00\xa0€" in german.text
    )  # Babel puts a no-break space before the sign and "Freitag, 12. März 2027" in german.text


def test_html_escapes_values_from_events():
    context = {**SAMPLES["host_new_booking"], "booking": {**SAMPLE_BOOKING, "guest": {"name": "<script>x</script>"}}}
    message = Templates().render("host_new_booking", "en", context)
    assert "<script>x</script>" not in message.html and "&lt;script&gt;" in message.html
    assert "<script>x</script>" in message.text


@pytest.mark.parametrize(
    ("requested", "expected"), [("de-AT", "de"), ("de_DE", "de"), ("fr", "en"), (None, "en"), ("EN-us", "en")]
)
def test_locale_resolution(requested, expected):
    assert resolve_locale(requested) == expected


def test_transactional_mail_stays_on_and_push_is_opt_in():
    confirmed, held = TYPES["booking_confirmed"], TYPES["booking_held"]
    assert is_enabled(confirmed, "email", False) is True
    assert is_enabled(held, "email", False) is False
    assert is_enabled(held, "email", None) is True
    assert is_enabled(confirmed, "sms", None) is True
    assert is_enabled(confirmed, "push", None) is False
    assert is_enabled(confirmed, "push", True) is True
    assert is_enabled(TYPES["payment_refunded"], "sms", True) is False  # no short text: email only


def test_quiet_hours_in_the_recipients_time_zone():
    berlin_night = datetime(2027, 1, 10, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    end = quiet_hours_end(berlin_night, "Europe/Berlin", 22, 8)
    assert end == datetime(2027, 1, 11, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    # The same instant is mid-afternoon in New York: no waiting.
    assert quiet_hours_end(berlin_night, "America/New_York", 22, 8) is None
    early = datetime(2027, 1, 11, 5, 0, tzinfo=UTC)  # 06:00 in Berlin, same day end
    assert quiet_hours_end(early, "Europe/Berlin", 22, 8) == datetime(2027, 1, 11, 8, tzinfo=ZoneInfo("Europe/Berlin"))
    assert quiet_hours_end(berlin_night, "Europe/Berlin", 0, 0) is None
    assert quiet_hours_end(berlin_night, "Not/AZone", 22, 8) == datetime(2027, 1, 11, 8, tzinfo=UTC)


def test_retry_delay_grows_with_jitter_and_is_capped():
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        delay = retry_delay(attempt, 2.0, 60.0)
        assert ceiling / 2 <= delay <= ceiling


def test_recipient_hash_is_keyed_and_normalised():
    assert recipient_hash(KEY, "email", "Ada@Example.org ") == recipient_hash(KEY, "email", "ada@example.org")
    assert recipient_hash(KEY, "email", "ada@example.org") != recipient_hash(b"other", "email", "ada@example.org")


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("ada@example.org", True),
        ("a.b+tag@mail.example.co.uk", True),
        ("not an address", False),
        ("ada@localhost", False),
        ("ada@example.org\r\nBcc: x@y.z", False),
        ("<ada@example.org>", False),
    ],
)
def test_email_validation(address, valid):
    assert is_valid_email(address) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+4915112345678", True),
        ("+14155552671", True),
        ("+4912", False),
        ("015112345678", False),
        ("+1 415 555 2671", False),
    ],
)
def test_e164_validation(number, valid):
    assert is_valid_e164(number) is valid


def test_unsubscribe_tokens_cannot_be_forged():
    token = unsubscribe_token(KEY, "0193a7c0-0000-7000-8000-0000000000a1", "booking_held")
    assert read_unsubscribe_token(KEY, token) == ("0193a7c0-0000-7000-8000-0000000000a1", "booking_held")
    assert read_unsubscribe_token(b"other-key", token) is None
    subject, _, signature = token.partition(".")
    assert read_unsubscribe_token(KEY, subject + "." + "0" * len(signature)) is None
    assert read_unsubscribe_token(KEY, "garbage") is None


def test_stay_calendar_uses_the_property_time_zone_and_address():
    calendar = Calendar.from_ical(stay_calendar(SAMPLE_BOOKING))
    stay = calendar.walk("VEVENT")[0]
    berlin = ZoneInfo("Europe/Berlin")
    assert stay.decoded("dtstart") == datetime(2027, 3, 12, 15, 0, tzinfo=berlin)
    assert stay.decoded("dtend") == datetime(2027, 3, 15, 11, 0, tzinfo=berlin)
    assert stay["dtstart"].params["TZID"] == "Europe/Berlin"
    assert str(stay["location"]) == "Seestraße 12, Berlin, DE"
    assert str(stay["uid"]) == f"{SAMPLE_BOOKING['booking_id']}@staybook"


def test_composed_mail_is_multipart_alternative_with_unsubscribe_for_optional_mail():
    rendered = Templates().render("booking_held", "en", SAMPLES["booking_held"], unsubscribe_url="https://x.test/u?t=1")
    message = compose_email(
        rendered,
        sender="staybook <no-reply@staybook.test>",
        recipient="ada@example.org",
        recipient_name="Ada Lovelace",
        unsubscribe_url="https://x.test/u?t=1",
    )
    parsed = email.message_from_bytes(message.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["List-Unsubscribe"] == "<https://x.test/u?t=1>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"].endswith("@staybook.test>")
    assert "https://x.test/u?t=1" in parsed.get_body(("plain",)).get_content()


def test_composed_mail_round_trips_through_a_mail_parser_in_every_locale():
    calendar = stay_calendar(SAMPLE_BOOKING)
    for locale in LOCALES:
        rendered = Templates().render("booking_confirmed", locale, SAMPLES["booking_confirmed"])
        message = compose_email(
            rendered,
            sender="Staybook Bücher <no-reply@staybook.test>",
            recipient="ada@example.org",
            recipient_name="Ådä\nBcc: evil@example.org",  # a line break from a stored context
            calendar=calendar,
        )
        parsed = email.message_from_bytes(message.data, policy=policy.default)
        assert all(not part.defects for part in parsed.walk())
        assert parsed["Bcc"] is None
        assert parsed["To"].addresses[0].display_name == "Ådä Bcc: evil@example.org"
        assert parsed["From"].addresses[0].display_name == "Staybook Bücher"
        assert parsed["Subject"] == rendered.subject
        assert parsed["Message-ID"] == message.message_id
        assert parsed.get_body(("plain",)).get_content() == rendered.text
        assert parsed.get_body(("html",)).get_content().rstrip("\n") == rendered.html.rstrip("\n")
        attachment = next(parsed.iter_attachments())
        assert attachment.get_content().encode() == calendar
        assert attachment.get_param("method") == "PUBLISH"
        assert max(len(line) for line in message.data.split(b"\n")) <= 998


def test_stay_calendar_in_utc_needs_no_time_zone_definition():
    booking = {**SAMPLE_BOOKING, "property": {**SAMPLE_BOOKING["property"], "timezone": "UTC"}}
    calendar = Calendar.from_ical(stay_calendar(booking))
    assert calendar.walk("VTIMEZONE") == []
    assert calendar.walk("VEVENT")[0].decoded("dtstart") == datetime(2027, 3, 12, 15, 0, tzinfo=UTC)
    # In a zone, the definition covers the stay's transitions.
    zoned = Calendar.from_ical(stay_calendar(SAMPLE_BOOKING))
    assert [tz["tzid"] for tz in zoned.walk("VTIMEZONE")] == ["Europe/Berlin"]


def test_invalid_recipient_address_is_a_permanent_failure():
    rendered = Templates().render("booking_confirmed", "en", SAMPLES["booking_confirmed"])
    with pytest.raises(PermanentFailure):
        compose_email(rendered, sender="no-reply@staybook.test", recipient="ada@example.org\nBcc: x@y.z")


async def test_sandbox_provider_records_and_simulates_failures():
    provider = SandboxProvider()
    message_id = await provider.send("sms", "+14155552671", "hello", "ref-1")
    assert provider.sent == [
        {"id": message_id, "channel": "sms", "to": "+14155552671", "text": "hello", "reference": "ref-1"}
    ]
    with pytest.raises(TemporaryFailure):
        await provider.send("sms", "+14155550000", "hello", "ref-2")
    with pytest.raises(PermanentFailure):
        await provider.send("sms", "+14155559999", "hello", "ref-3")
    with pytest.raises(PermanentFailure, match="E.164"):
        await provider.send("sms", "0151 1234", "hello", "ref-4")
    receipt = provider.parse_receipt({"message_id": message_id, "status": "delivered"})
    assert receipt.status == "delivered" and receipt.provider_message_id == message_id
    with pytest.raises(ValueError):
        provider.parse_receipt({"status": "maybe"})
