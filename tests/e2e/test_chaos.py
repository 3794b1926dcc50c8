"""Chaos, the short version of bench/chaos.py: the production topology (`staybook stack`) under a small
booking load, with a kill -9 of the worker, a kill -9 of one API worker process, Redis down for ~10 s,
PostgreSQL stopped for ~4 s and the payment provider timing out or failing for ~8 s. After each: no
confirmation lost, no night oversold, the outbox drained, no saga stuck, no 500, and no connection reset
while a dependency is away (a killed API process's connections are retried and settle); search answers
while PostgreSQL is down, and the bookings whose guests were told "pending" are confirmed by the platform."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from bench.chaos import Options, run

from tests.servers import require_stack_servers

pytestmark = pytest.mark.e2e

FAULTS = ["worker_kill", "api_worker_kill", "redis_down", "postgres_restart", "provider_outage"]


@pytest.fixture
def chaos_dir():
    require_stack_servers()
    base = Path(tempfile.mkdtemp(prefix="staybook-chaos-test-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_faults_lose_nothing_and_answer_cleanly(chaos_dir):
    options = Options(
        faults=FAULTS, ports="18050-18099", rate=2.0, room_types=10, settle=8.0, worker_down=3.0, redis_down=10.0,
        postgres_down=4.0, provider_down=8.0, root=chaos_dir,
    )  # fmt: skip
    outcome = run(options)
    summaries = outcome["summary"]
    assert set(summaries) == {"baseline", *FAULTS, "end"}
    for name, summary in summaries.items():
        assert summary["lost"] == 0, (name, summary)
        assert summary["oversold"] == 0, (name, summary)
        assert summary["outbox_drained"], (name, summary)
        assert summary["stuck_sagas"] == 0 and summary["pending_unsettled"] == 0, (name, summary)
        assert summary["status_500"] == 0 and summary["unclean_5xx"] == 0, (name, summary)
        assert summary["unsettled_after_retry"] == 0, (name, summary)
        assert summary["recovered_in_seconds"] is not None, (name, summary)
    # Bookings went on through each fault, and Redis's absence reset no connection.
    for name in FAULTS:
        assert summaries[name]["confirmed"] > 0, (name, summaries[name])
    assert summaries["redis_down"]["resets"] == 0, summaries["redis_down"]
    # Search kept answering (from its index) while PostgreSQL was stopped, and nothing else did.
    outage = summaries["postgres_restart"]["searches_while_database_down"]
    assert set(outage) == {"200"} and outage["200"] >= 2, summaries["postgres_restart"]
    # The provider timing out: the guest was told "pending" (202), not failed, and the platform
    # confirmed each such booking itself once the provider's answer came; its failures were 502s.
    provider = summaries["provider_outage"]
    assert provider["payment_outcomes"].get("pending", 0) > 0, provider
    assert provider["pending_confirmed"] == provider["pending_told"] > 0, provider
    assert provider["status_500"] == 0 and set(provider["errors_by_status"]) <= {"409", "502", "503"}, provider
    assert outcome["ok"], summaries
