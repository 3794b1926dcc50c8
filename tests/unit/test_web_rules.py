"""The web pages' rules that need no server: CSRF tokens, locales and formats, forms, calendars, refunds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from starlette.datastructures import FormData, QueryParams

from staybook.inventory.events import NightSnapshot
from staybook.kernel.errors import InvalidInput
from staybook.web import i18n
from staybook.web.account import local_target
from staybook.web.rendering import environment
from staybook.web.schemas import CheckoutForm, parse_form, to_minor_units
from staybook.web.service import hold_seconds_left, month_grid, refund_preview, search_params
from staybook.web.session import csrf_matches, csrf_token, new_csrf_seed

SECRET = b"k" * 32


def test_csrf_token_is_bound_to_the_browser_seed_and_the_secret():
    seed = new_csrf_seed()
    token = csrf_token(SECRET, seed)
    assert csrf_matches(SECRET, seed, token)
    assert not csrf_matches(SECRET, new_csrf_seed(), token)
    assert not csrf_matches(b"other" * 8, seed, token)
    assert not csrf_matches(SECRET, seed, None)
    assert not csrf_matches(SECRET, None, token)
    assert not csrf_matches(SECRET, seed, token[:-1] + ("A" if token[-1] != "A" else "B"))


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [("de", "en-US", "de"), (None, "de-DE,de;q=0.9,en;q=0.8", "de"), (None, "fr-FR, en;q=0.5", "en"),
     ("xx", None, "en"), (None, None, "en")],
)  # fmt: skip
def test_locale_is_the_cookie_then_accept_language_then_english(cookie, header, expected):
    assert i18n.pick_locale(cookie, header) == expected


def test_money_and_dates_follow_the_locale_and_currency():
    assert i18n.money(12345, "EUR", "en") == "€123.45"
    assert i18n.money(12345, "EUR", "de") == "123,45\xa0€"
    assert i18n.money(12345, "JPY", "en") == "¥12,345"
    assert i18n.day(date(2027, 3, 1), "de") == "01.03.2027"
    assert i18n.day("2027-03-01", "en") == "Mar 1, 2027"


def test_german_messages_are_translated():
    assert i18n.translations("de").gettext("Find your next stay") != "Find your next stay"


def test_amounts_are_parsed_in_minor_units_of_their_currency():
    assert to_minor_units("120.50", "EUR", "f") == 12050
    assert to_minor_units("120,5", "EUR", "f") == 12050
    assert to_minor_units("1200", "JPY", "f") == 1200
    for bad in ("12.345", "-1", "abc", "1e40", "NaN"):
        with pytest.raises(InvalidInput):
            to_minor_units(bad, "EUR", "f")
    with pytest.raises(InvalidInput):
        to_minor_units("1.5", "JPY", "f")


def test_a_form_with_a_bad_field_names_it():
    fields = {"room_type_id": "not-a-uuid", "check_in": "2027-03-01", "check_out": "2027-03-03", "guests": "2",
              "name": "Ada", "email": "ada@example.com", "idempotency_key": "k" * 16}  # fmt: skip
    form = FormData(list(fields.items()))
    with pytest.raises(InvalidInput) as refused:
        parse_form(CheckoutForm, form)
    assert refused.value.extensions["errors"][0]["field"] == "room_type_id"


def test_results_url_prices_are_major_units_and_become_the_search_apis_minor_units():
    params = search_params(
        QueryParams("city=Paris&check_in=2027-03-01&check_out=2027-03-03&min_price=50&max_price=200.5&amenities=wifi"),
        "EUR",
        12,
    )
    assert (params.price_min, params.price_max, params.amenities, params.limit) == (5000, 20050, ["wifi"], 12)
    with pytest.raises(InvalidInput) as refused:
        search_params(QueryParams("city=Paris&check_in=tomorrow&check_out=2027-03-03"), "EUR", 12)
    assert refused.value.extensions["errors"][0]["field"] == "query.check_in"


def test_sign_in_goes_back_only_to_a_path_of_this_site():
    assert local_target("/bookings?x=1") == "/bookings?x=1"
    for outside in ("https://evil.example/", "//evil.example", "/\\evil.example", "", None):
        assert local_target(outside) == "/"


def test_month_grid_marks_each_night():
    first = date(2027, 3, 1)
    nights = [
        NightSnapshot(night=date(2027, 3, 2), total=2, available=2, price=100, closed=False, closed_to_arrival=False,
                      min_stay=1),
        NightSnapshot(night=date(2027, 3, 3), total=2, available=0, price=100, closed=False, closed_to_arrival=False,
                      min_stay=1),
        NightSnapshot(night=date(2027, 3, 4), total=2, available=2, price=100, closed=True, closed_to_arrival=False,
                      min_stay=1),
    ]  # fmt: skip
    days = {d.day: d for week in month_grid(first, nights, today=date(2027, 3, 2)) for d in week if d.day}
    assert len(days) == 31
    assert days[date(2027, 3, 1)].state == "past"
    assert days[date(2027, 3, 2)].state == "available"
    assert days[date(2027, 3, 3)].state == "sold_out" and days[date(2027, 3, 3)].booked == 2
    assert days[date(2027, 3, 4)].state == "closed"
    assert days[date(2027, 3, 5)].state == "outside"


def _view(check_in: date, created: datetime) -> dict:
    return {
        "status": "confirmed",
        "cancellation_policy": "flexible",
        "price_breakdown": [{"night": str(check_in), "amount": 100}, {"night": str(check_in), "amount": 120}],
        "created_at": created.isoformat(),
        "check_in": str(check_in),
        "property": {"check_in_time": "15:00", "timezone": "Europe/Paris"},
    }


def test_refund_preview_applies_the_booking_policy():
    now = datetime(2027, 3, 1, 12, tzinfo=UTC)
    assert refund_preview(_view(date(2027, 3, 10), now - timedelta(days=1)), now) == 220
    evening = now + timedelta(hours=8)  # 18 h before check-in: all but the first night
    assert refund_preview(_view(date(2027, 3, 2), now - timedelta(days=1)), evening) == 120


def test_hold_seconds_left_counts_down_to_zero():
    now = datetime(2027, 3, 1, 12, tzinfo=UTC)
    view = {"status": "held", "expires_at": (now + timedelta(seconds=90)).isoformat()}
    assert hold_seconds_left(view, now) == 90
    assert hold_seconds_left(view, now + timedelta(minutes=5)) == 0
    assert hold_seconds_left({"status": "confirmed", "expires_at": None}, now) == 0


def test_amenity_and_property_type_labels_read_as_written_and_are_translated():
    assert [i18n.code_label(code) for code in ("wifi", "tv", "bbq", "hot_tub", "bed_and_breakfast")] == [
        "Wi-Fi", "TV", "BBQ", "Hot tub", "Bed and breakfast"
    ]  # fmt: skip
    assert i18n.code_labels("de")["wifi"] == "WLAN"
    assert i18n.code_labels("de")["tv"] == "Fernseher"
    assert i18n.code_labels("en")["bbq"] == "BBQ"
    assert environment("de").from_string("{{ a|code_label }}").render(a="air_conditioning") == "Klimaanlage"


@pytest.mark.parametrize("locale", ["en", "de"])
def test_literal_texts_translated_when_compiled_render_as_the_call_does(locale):
    env = environment(locale)
    source = (
        "{{ _('Search') }}|{{ _(\"100%% sure\") }}|{{ _('Rating %(r)s of 5', r=4) }}|{{ _(name) }}|"
        "{{ _('Any') ~ '!' }}|{% set s = {'a': _('Sign in')} %}{{ s.a }}|{{ x._('no') if x else '' }}"
    )
    compiled = env.from_string(source).render(name="Filters", x=None)
    call = env.globals["gettext"]
    expected = "|".join(
        str(part)
        for part in (
            env.from_string("{{ g('Search') }}").render(g=call),
            env.from_string("{{ g('100%% sure') }}").render(g=call),
            env.from_string("{{ g('Rating %(r)s of 5', r=4) }}").render(g=call),
            env.from_string("{{ g('Filters') }}").render(g=call),
            env.from_string("{{ g('Any') ~ '!' }}").render(g=call),
            env.from_string("{{ g('Sign in') }}").render(g=call),
            "",
        )
    )
    assert compiled == expected
    assert "100% sure" in compiled
