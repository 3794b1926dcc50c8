"""How far a search index build has read shows per stage (/metrics, and `staybook demo` while it starts)."""

from __future__ import annotations

from staybook.search import service as search_service
from tests.integration.test_search_api import seed


async def test_a_build_reports_each_stage_read_to_its_total(sqlite_settings, make_runtime):
    runtime = await make_runtime(sqlite_settings)
    await seed(runtime)
    reported: list[tuple[str, int, int | None]] = []
    deps = search_service.SearchDeps(runtime)  # a runtime without lifespans: deps of its own
    counts = await search_service.reindex(deps, lambda stage, done, total: reported.append((stage, done, total)))
    await deps.index.close()
    assert counts["properties"] == 3 and counts["room_nights"] > 0
    assert search_service.build_progress() == [
        ("properties", counts["properties"], counts["properties"]),
        ("room types", counts["room_types"], counts["room_types"]),
        ("room nights", counts["room_nights"], counts["room_nights"]),
    ]
    # Each stage is announced before its first row, so a slow stage shows from its start.
    assert [entry for entry in reported if entry[1] == 0] == [
        ("properties", 0, 3), ("room types", 0, counts["room_types"]), ("room nights", 0, counts["room_nights"])
    ]
