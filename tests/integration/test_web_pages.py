"""The guest's property and checkout pages read the listing from the cache (beside the availability
answers); every change of the property, wherever it is made, shows on the next view."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from staybook.kernel import metrics
from tests.conftest import bearer
from tests.integration.test_catalog_api import listed


async def _page_shows(client, path: str, params: dict, text: str) -> bool:
    # A change made through the API reaches the pages' cache as an event: a moment later.
    for _ in range(50):
        page = await client.get(path, params=params)
        assert page.status_code == 200, page.text[:500]
        if text in page.text:
            return True
        await asyncio.sleep(0.1)
    return False


def _listing_hits() -> float:
    return metrics.CACHE_REQUESTS.labels("web", "hit")._value.get()


async def _served_from_cache(client, path: str, params: dict) -> None:
    """Waits until the page's reads are cache hits (the new room type's calendar events, which
    bump the cache, have arrived), so what follows shows a change reaching a cached listing."""
    for _ in range(50):
        before = _listing_hits()
        await client.get(path, params=params)
        if _listing_hits() >= before + 2:  # the listing and the calendar's month
            await asyncio.sleep(0.3)
            before = _listing_hits()
            await client.get(path, params=params)
            if _listing_hits() >= before + 2:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the property page's reads were never served from the cache")


async def test_property_page_shows_every_change_of_the_cached_listing(live_settings, client_for):
    host = bearer(live_settings, "host")
    check_in = date.today() + timedelta(days=20)
    stay = {"check_in": str(check_in), "check_out": str(check_in + timedelta(days=2)), "guests": 2}
    async with client_for(live_settings) as client:
        property_id, room_type_id = await listed(client, host)
        path = f"/properties/{property_id}"
        assert await _page_shows(client, path, stay, "Casa do Rio")
        await _served_from_cache(client, path, stay)
        renamed = await client.patch(f"/api/v1/properties/{property_id}", json={"name": "Casa Nova"}, headers=host)
        assert renamed.status_code == 200, renamed.text
        assert await _page_shows(client, path, stay, "Casa Nova")
        await _served_from_cache(client, path, stay)
        room = await client.patch(f"/api/v1/room-types/{room_type_id}", json={"name": "Loft Double"}, headers=host)
        assert room.status_code == 200, room.text
        assert await _page_shows(client, path, stay, "Loft Double")
        closed = await client.put(
            f"/api/v1/room-types/{room_type_id}/calendar",
            json={"from": str(check_in), "to": str(check_in + timedelta(days=1)), "closed": True},
            headers=host,
        )
        assert closed.status_code == 200, closed.text
        assert await _page_shows(client, path, stay, "Not available")
        archived = await client.delete(f"/api/v1/properties/{property_id}", headers=host)
        assert archived.status_code == 204
        page = await client.get(path, params=stay)
        assert page.status_code == 404 and "no longer listed" in page.text


async def test_results_page_is_the_same_page_before_and_after_its_fast_path(live_settings, client_for):
    """The first `GET /results` goes through the router; the fast path serves every later one, with
    the same page function and the same context deps."""
    host = bearer(live_settings, "host")
    check_in = date.today() + timedelta(days=20)
    query = {"city": "Porto", "check_in": str(check_in), "check_out": str(check_in + timedelta(days=2)), "guests": 2}
    async with client_for(live_settings) as client:
        await listed(client, host)
        routed = await client.get("/results", params=query)
        fast = await client.get("/results", params=query)
        assert routed.status_code == fast.status_code == 200, fast.text[:500]
        assert "Something went wrong" not in routed.text + fast.text
        # The index takes the new listing from its events a moment later; the fast path shows it.
        assert await _page_shows(client, "/results", query, "Casa do Rio")
