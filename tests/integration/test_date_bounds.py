"""Dates that would make a route walk millions of nights are refused before any work: year 9999,
reversed ranges, stays longer than inventory.max_stay_nights, days beyond inventory.horizon_days."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from tests.conftest import bearer
from tests.integration.test_catalog_api import listed

FAR = "9999-12-30"


def largest_cached_value(runtime) -> int:
    return max((len(raw) for _, raw in runtime.cache._entries.values()), default=0)


def assert_refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_far_and_reversed_dates_are_refused_on_every_route(sqlite_settings, client_for):
    host, guest = bearer(sqlite_settings, "host"), bearer(sqlite_settings, "guest")
    today = date.today()
    soon = str(today + timedelta(days=3))
    async with client_for(sqlite_settings) as client:
        runtime = client.app.state.runtime
        property_id, room_type_id = await listed(client, host)
        availability = f"/api/v1/properties/{property_id}/availability"
        for params, field in (
            ({"check_in": soon, "check_out": FAR}, "query.check_out"),  # the 11 s walk of the issue
            ({"check_in": "9999-12-29", "check_out": FAR}, "query.check_out"),  # one night beyond the horizon
            ({"check_in": FAR, "check_out": soon}, "query.check_out"),
        ):
            assert_refused(await client.get(availability, params=params), field)
            assert_refused(await client.get("/api/v1/search", params={"city": "Porto", **params}), field)
            assert_refused(
                await client.get("/api/v1/recommendations", params={"city": "Porto", **params}, headers=guest),
                field,
            )
        assert largest_cached_value(runtime) < 10_000

        for check_in, check_out in ((soon, FAR), ("9999-12-29", FAR), (FAR, soon)):
            hold = await client.post(
                "/api/v1/bookings",
                json={
                    "room_type_id": room_type_id,
                    "check_in": check_in,
                    "check_out": check_out,
                    "guests": 1,
                    "guest": {"name": "Ana", "email": "ana@example.com"},
                },
                headers=guest | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert_refused(hold, "body.check_out")

        calendar = f"/api/v1/room-types/{room_type_id}/calendar"
        assert_refused(
            await client.get(calendar, params={"from": "0001-01-01", "to": "9999-12-31"}, headers=host), "query.to"
        )
        assert_refused(await client.get(calendar, params={"from": FAR, "to": soon}, headers=host), "query.to")
        update = await client.put(
            calendar, json={"from": "0001-01-01", "to": "9999-12-31", "closed": True}, headers=host
        )
        assert update.status_code == 422 and update.headers["content-type"] == "application/problem+json"


async def test_ical_import_clips_an_event_from_year_1_to_9999_to_the_calendar(sqlite_settings, client_for):
    host = bearer(sqlite_settings, "host")
    ics = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        b"BEGIN:VEVENT\r\nUID:all-time\r\nDTSTART;VALUE=DATE:00010101\r\nDTEND;VALUE=DATE:99991231\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:last-day\r\nDTSTART;VALUE=DATE:99991231\r\nEND:VEVENT\r\n"
        b"END:VCALENDAR\r\n"
    )
    async with client_for(sqlite_settings) as client:
        _, room_type_id = await listed(client, host)
        imported = await client.post(
            f"/api/v1/room-types/{room_type_id}/calendar/import",
            files={"file": ("all.ics", ics, "text/calendar")},
            headers=host,
        )
        assert imported.status_code == 200, imported.text
        result = imported.json()
        horizon = sqlite_settings.inventory.horizon_days
        assert result["events"] == 2
        # Every night the calendar has is closed; nothing outside the bookable window was expanded.
        assert horizon - 2 <= result["closed_nights"] <= horizon + 2
        assert result["closed_nights"] + result["skipped_nights"] <= horizon + 2


async def test_web_pages_take_far_dates_and_months_without_a_server_error(sqlite_settings, client_for):
    host = bearer(sqlite_settings, "host")
    async with client_for(sqlite_settings) as client:
        property_id, _ = await listed(client, host)
        await client.post(f"/api/v1/properties/{property_id}/publish", headers=host)
        for params in (
            {"check_in": "2027-01-03", "check_out": FAR},
            {"check_in": "9999-12-31", "check_out": "9999-12-31", "month": "9999-12"},
            {"month": "0001-01"},
            {"month": "9999-12"},
        ):
            page = await client.get(f"/properties/{property_id}", params=params)
            assert page.status_code == 200, (params, page.status_code)
        assert largest_cached_value(client.app.state.runtime) < 10_000
