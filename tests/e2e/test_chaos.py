"""Chaos, the short version of bench/chaos.py: the production topology (`staybook stack`) under a small
booking load, with a kill -9 of the worker, a kill -9 of one API worker process and Redis down for ~10 s.
After each: no confirmation lost, no night oversold, the outbox drained, no saga stuck, no 500, and no
connection reset while Redis is away (a killed API process's connections are retried and settle)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from bench.chaos import Options, run

from tests.servers import require_stack_servers

pytestmark = pytest.mark.e2e

FAULTS = ["worker_kill", "api_worker_kill", "redis_down"]


@pytest.fixture
def chaos_dir():
    require_stack_servers()
    base = Path(tempfile.mkdtemp(prefix="staybook-chaos-test-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_faults_lose_nothing_and_answer_cleanly(chaos_dir):
    options = Options(
        faults=FAULTS, ports="18050-18099", rate=2.0, room_types=10, settle=8.0, worker_down=3.0, redis_down=10.0,
        root=chaos_dir,
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
    assert outcome["ok"], summaries
