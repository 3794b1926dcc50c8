"""Pricing rules, stay-date checks across time zones and DST, and the availability decision: no I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from staybook.inventory.events import NightSnapshot
from staybook.inventory.ical import blocked_nights, blocked_ranges, export_calendar
from staybook.inventory.pricing import (
    DateRangePrice,
    SeasonalRule,
    WeekdayRule,
    apply_percent,
    assess_stay,
    nightly_prices,
)
from staybook.kernel.dates import check_stay_at_property, stay_fields_in, today_in
from staybook.kernel.errors import InvalidInput

MONDAY = date(2030, 7, 1)


def validate_stay_dates(check_in: date, check_out: date, **rule) -> int:
    """The availability query's date checks as its route answers them: the kernel's rule, with the
    dates' field paths under `query`."""
    with stay_fields_in("query"):
        return check_stay_at_property(check_in, check_out, **rule)


def night(day: date, *, available=2, total=2, price=10_000, closed=False, cta=False, min_stay=1) -> NightSnapshot:
    return NightSnapshot(
        night=day,
        total=total,
        available=available,
        price=price,
        closed=closed,
        closed_to_arrival=cta,
        min_stay=min_stay,
    )


def week(**overrides) -> list[NightSnapshot]:
    return [night(MONDAY + timedelta(days=i), **overrides) for i in range(7)]


def test_percentages_round_half_up_and_never_go_negative():
    assert apply_percent(999, 20) == 1199  # 1198.8
    assert apply_percent(125, 10) == 138  # 137.5 rounds up
    assert apply_percent(10_000, -100) == 0
    assert apply_percent(10_000, -150) == 0


def test_weekend_rule_raises_friday_and_saturday_nights():
    prices = nightly_prices(10_000, MONDAY, MONDAY + timedelta(days=7), [WeekdayRule(percent=20)])
    assert [prices[MONDAY + timedelta(days=i)] for i in range(7)] == [10_000] * 4 + [12_000, 12_000, 10_000]


def test_rules_apply_in_order_date_range_replaces_then_percentages_adjust():
    festival = DateRangePrice(start=MONDAY + timedelta(days=2), end=MONDAY + timedelta(days=5), amount=20_000)
    summer = SeasonalRule(percent=30, start=(6, 15), end=(9, 1))
    prices = nightly_prices(10_000, MONDAY, MONDAY + timedelta(days=7), [summer, festival, WeekdayRule(percent=20)])
    assert prices[MONDAY] == 13_000
    assert prices[MONDAY + timedelta(days=2)] == 20_000  # festival replaces the summer price
    assert prices[MONDAY + timedelta(days=4)] == 24_000  # festival Friday, then weekend +20%
    assert prices[MONDAY + timedelta(days=5)] == 15_600  # summer Saturday: 13,000 + 20%


def test_seasons_may_wrap_over_new_year():
    winter = SeasonalRule(percent=-10, start=(12, 1), end=(3, 1))
    assert winter.applies(date(2030, 12, 31)) and winter.applies(date(2031, 1, 15))
    assert not winter.applies(date(2031, 3, 1)) and not winter.applies(date(2030, 11, 30))


@pytest.mark.parametrize(
    ("check_in", "check_out", "field"),
    [
        (date(2030, 1, 10), date(2030, 1, 10), "query.check_out"),
        (date(2030, 1, 10), date(2030, 1, 9), "query.check_out"),
        (date(2030, 1, 10), date(2030, 2, 10), "query.check_out"),  # 31 nights
        (date(2030, 1, 4), date(2030, 1, 6), "query.check_in"),  # in the past
    ],
)
def test_impossible_stays_are_refused_with_the_field(check_in, check_out, field):
    with pytest.raises(InvalidInput) as refused:
        validate_stay_dates(check_in, check_out, today=date(2030, 1, 5), max_nights=30)
    assert refused.value.extensions["errors"][0]["field"] == field


def test_today_depends_on_the_property_time_zone():
    instant = datetime(2030, 3, 30, 23, 30, tzinfo=UTC)
    assert today_in("Pacific/Kiritimati", instant) == date(2030, 3, 31)
    assert today_in("America/Los_Angeles", instant) == date(2030, 3, 30)
    # A stay starting on the 30th is already in the past in Kiribati but fine in California.
    with pytest.raises(InvalidInput):
        validate_stay_dates(
            date(2030, 3, 30), date(2030, 4, 1), today=today_in("Pacific/Kiritimati", instant), max_nights=30
        )
    assert (
        validate_stay_dates(
            date(2030, 3, 30), date(2030, 4, 1), today=today_in("America/Los_Angeles", instant), max_nights=30
        )
        == 2
    )


def test_a_stay_across_a_dst_change_counts_nights_not_hours():
    # Europe/Lisbon springs forward in the night of 30/31 March 2030: that night is 23 hours long.
    instant = datetime(2030, 3, 30, 23, 59, tzinfo=UTC)  # WET = UTC until 01:00 UTC on the 31st
    assert today_in("Europe/Lisbon", instant) == date(2030, 3, 30)
    assert today_in("Europe/Lisbon", instant + timedelta(minutes=2)) == date(2030, 3, 31)
    assert validate_stay_dates(date(2030, 3, 30), date(2030, 4, 1), today=date(2030, 3, 30), max_nights=2) == 2


def test_assess_a_free_stay():
    result = assess_stay(week(), check_in=MONDAY, check_out=MONDAY + timedelta(days=3), guests=2, max_guests=2)
    assert result.bookable and result.available_units == 2 and result.total_amount == 30_000
    assert [p for _, p in result.prices] == [10_000] * 3


def test_assess_names_every_reason():
    nights = week()
    nights[0] = night(MONDAY, cta=True, min_stay=4)
    nights[1] = night(MONDAY + timedelta(days=1), closed=True)
    nights[2] = night(MONDAY + timedelta(days=2), available=0)
    result = assess_stay(nights, check_in=MONDAY, check_out=MONDAY + timedelta(days=3), guests=3, max_guests=2)
    assert not result.bookable
    assert result.reasons == [
        "at most 2 guests",
        f"closed: {MONDAY + timedelta(days=1)}",
        f"closed to arrival on {MONDAY}",
        "minimum stay 4 nights",
    ]
    assert result.available_units == 0


def test_assess_sold_out_and_missing_nights():
    nights = week()
    nights[1] = night(MONDAY + timedelta(days=1), available=1)
    two_rooms = assess_stay(
        nights, check_in=MONDAY, check_out=MONDAY + timedelta(days=3), guests=4, max_guests=2, units=2
    )
    assert two_rooms.reasons == [f"sold out: {MONDAY + timedelta(days=1)}"] and two_rooms.available_units == 1
    beyond = assess_stay(
        nights, check_in=MONDAY + timedelta(days=6), check_out=MONDAY + timedelta(days=8), guests=1, max_guests=2
    )
    assert beyond.reasons == [f"not on sale: {MONDAY + timedelta(days=7)}"]
    archived = assess_stay(
        nights, check_in=MONDAY, check_out=MONDAY + timedelta(days=1), guests=1, max_guests=2, on_sale=False
    )
    assert archived.reasons == ["room type not on sale"]


def test_ical_ranges_merge_contiguous_nights_and_round_trip():
    nights = week()
    nights[1] = night(MONDAY + timedelta(days=1), available=0)
    nights[2] = night(MONDAY + timedelta(days=2), available=0)
    nights[4] = night(MONDAY + timedelta(days=4), closed=True)
    assert blocked_ranges(nights) == [
        (MONDAY + timedelta(days=1), MONDAY + timedelta(days=3), "Booked"),
        (MONDAY + timedelta(days=4), MONDAY + timedelta(days=5), "Closed"),
    ]
    exported = export_calendar(uuid.uuid4(), "Double", nights)
    parsed = blocked_nights(exported, window=(MONDAY, MONDAY + timedelta(days=30)))
    assert parsed.events == 2
    assert parsed.nights == [MONDAY + timedelta(days=d) for d in (1, 2, 4)]
    clipped = blocked_nights(exported, window=(MONDAY + timedelta(days=2), MONDAY + timedelta(days=5)))
    assert clipped.events == 2
    assert clipped.nights == [MONDAY + timedelta(days=d) for d in (2, 4)]


def test_today_in_agrees_with_the_zone_at_every_minute_around_midnights_and_dst():
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    zones = ("Europe/Lisbon", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham")
    # Days with DST changes north and south, stepped minute by minute through 30 hours each.
    for start in (datetime(2030, 3, 30, 12, tzinfo=UTC), datetime(2030, 10, 26, 12, tzinfo=UTC)):
        for minute in range(0, 30 * 60, 7):
            instant = start + timedelta(minutes=minute, seconds=31)
            for zone in zones:
                assert today_in(zone, instant) == instant.astimezone(ZoneInfo(zone)).date(), (zone, instant)
