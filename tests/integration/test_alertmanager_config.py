"""deploy/alertmanager/alertmanager.yml: valid for amtool (Debian package prometheus-alertmanager),
and routing each severity the alerts use to the receivers the on-call policy names:
P1 to the pager, P2 to chat and the pager, P3 to chat and email."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# severity -> the kinds of notification its receiver must send
POLICY = {
    "P1": {"pagerduty_configs"},
    "P2": {"pagerduty_configs", "slack_configs"},
    "P3": {"slack_configs", "email_configs"},
}


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        message = "amtool is missing (scripts/test installs the Debian package prometheus-alertmanager)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


def routed_receiver(labels: dict[str, str]) -> str:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_amtool_accepts_the_configuration():
    result = subprocess.run([amtool(), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_severity_reaches_the_receivers_of_its_policy():
    receivers = {receiver["name"]: receiver for receiver in yaml.safe_load(CONFIG.read_text())["receivers"]}
    for severity, kinds in POLICY.items():
        name = routed_receiver({"alertname": "Example", "severity": severity, "component": "api"})
        configured = {key for key in receivers[name] if key.endswith("_configs")}
        assert configured == kinds, (severity, name, configured)


def test_every_alert_routes_by_its_severity():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    expected = {severity: routed_receiver({"severity": severity}) for severity in POLICY}
    # Routing reads severity and component only: one amtool run per combination the alerts use.
    combinations = {
        (rule["labels"]["severity"], rule["labels"]["component"]) for group in groups for rule in group["rules"]
    }
    for severity, component in sorted(combinations):
        assert routed_receiver({"severity": severity, "component": component}) == expected[severity], component


def test_a_page_silences_the_lesser_alerts_of_its_component():
    inhibit_rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    page = next(rule for rule in inhibit_rules if rule["source_matchers"] == ['severity="P1"'])
    assert page["equal"] == ["component"]
    assert page["target_matchers"] == ['severity=~"P2|P3"']
