"""The alert and recording rules in deploy/prometheus, checked by promtool (Debian package `prometheus`).

`promtool check rules` parses them; `promtool test rules` runs the unit tests in
deploy/prometheus/tests/, where every alert has a case that fires and one that stays quiet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = [RULES_DIR / "recording_rules.yml", RULES_DIR / "alerts.yml"]
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOK_URL_PREFIX = "https://github.com/staybook/staybook/blob/main/docs/runbooks/"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is missing (scripts/test installs the Debian package prometheus)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rule_files_pass_promtool_check():
    result = subprocess.run(
        [tool("promtool"), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_pass_promtool():
    assert UNIT_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = subprocess.run(
        [tool("promtool"), "test", "rules", *map(str, UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=RULES_DIR / "tests",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        for group in document["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert sorted(names - firing) == [], "alerts without a firing case"
    assert sorted(names - quiet) == [], "alerts without a quiet case"
    assert sorted((firing | quiet) - names) == [], "cases for alerts that do not exist"


def test_every_alert_carries_severity_summary_description_and_runbook():
    rules = alert_rules()
    assert len(rules) >= 40
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"P1", "P2", "P3"}, name
        assert rule["labels"].get("component"), name
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        assert annotations["runbook_url"].startswith(RUNBOOK_URL_PREFIX), name
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"


def test_the_issue_rows_have_their_alerts_and_thresholds():
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    expected = {
        "HighServerErrorRate": ("P1", "> 0.005", "2m"),
        "HighClientErrorRate": ("P2", "> 0.05", "5m"),
        "HighLatencyP50": ("P3", "> 0.2", None),
        "HighLatencyP99": ("P2", "> 0.5", None),
        "HighLatencyP999": ("P1", "> 2", None),
        "ThroughputBelowBaseline": ("P2", "< 0.5 *", None),
        "BookingSuccessLow": ("P1", "< 0.99", None),
        "SearchLatencyHigh": ("P3", "> 0.1", None),
        "PaymentSuccessLow": ("P1", "< 0.995", None),
        "DatabaseConnectionsHigh": ("P2", "> 0.8", None),
        "DatabaseReplicaLagHigh": ("P2", "> 1", None),
        "CacheHitRateLow": ("P3", "< 0.8", None),
        "BookingsBelowForecast": ("P2", "< 0.8 *", None),
        "SearchesDropped": ("P2", "< 0.5 *", None),
        "CancellationRateHigh": ("P3", "> 0.05", None),
    }
    for name, (severity, threshold, duration) in expected.items():
        rule = by_name[name]
        assert rule["labels"]["severity"] == severity, name
        assert threshold in rule["expr"], name
        if duration:
            assert rule["for"] == duration, name


RUNBOOKS = ROOT / "docs" / "runbooks"
SCENARIOS = [
    "database-failover",
    "region-failover",
    "cache-invalidation",
    "traffic-spike",
    "nats-outage",
    "payment-provider-outage",
    "rollback",
]


def github_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces to dashes."""
    anchors, in_code = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif line.startswith("#") and not in_code:
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_runbook_link_leads_to_a_page_and_its_section():
    for rule in alert_rules():
        page, _, anchor = rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL_PREFIX).partition("#")
        path = RUNBOOKS / page
        assert path.is_file(), (rule["alert"], page)
        if anchor:
            assert anchor in github_anchors(path), (rule["alert"], page, anchor)


def test_each_page_alert_and_scenario_has_a_runbook_with_steps_queries_and_commands():
    pages = {
        rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL_PREFIX)
        for rule in alert_rules()
        if rule["labels"]["severity"] == "P1"
    }
    assert all("#" not in page for page in pages), "a P1 alert links a section, not a page of its own"
    for name in sorted(pages | {f"{scenario}.md" for scenario in SCENARIOS}):
        text = (RUNBOOKS / name).read_text()
        assert "```promql" in text, name
        assert "```sh" in text, name
        assert re.search(r"^## Steps$", text, re.MULTILINE), name


def test_the_runbook_index_lists_every_alert_and_scenario():
    index = (RUNBOOKS / "README.md").read_text()
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in index, rule["alert"]
    for scenario in SCENARIOS:
        assert f"({scenario}.md)" in index, scenario


def test_links_between_runbooks_resolve():
    for page in sorted(RUNBOOKS.glob("*.md")):
        for target in re.findall(r"\]\(([\w\-]+\.md)?(?:#([\w\-]+))?\)", page.read_text()):
            linked = RUNBOOKS / target[0] if target[0] else page
            assert linked.is_file(), (page.name, target)
            if target[1]:
                assert target[1] in github_anchors(linked), (page.name, target)
