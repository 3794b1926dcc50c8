"""deploy/grafana: the dashboards' structure, their PromQL parsed by promtool, their one SQL table run
on the migrated schema, and the provisioning files that load them.

tests/integration/test_prometheus_live.py runs the same PromQL against a Prometheus scraping staybook.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
EXPECTED_DASHBOARDS = {"executive", "operations", "booking", "search", "identity", "notifications", "sla"}
# Grafana's range variables, with the values the checks run them at.
GRAFANA_VARIABLES = {"$__range": "6h", "$__rate_interval": "1m", "$__interval": "15s"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def promql_targets() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression with Grafana's variables filled in) of every PromQL query."""
    found = []
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel["targets"]:
                if "expr" in target:
                    expr = target["expr"]
                    for variable, value in GRAFANA_VARIABLES.items():
                        expr = expr.replace(variable, value)
                    found.append((path.stem, panel["title"], expr))
    return found


def test_the_dashboards_of_the_issue_exist_with_unique_uids():
    assert {path.stem for path in DASHBOARDS} == EXPECTED_DASHBOARDS
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_every_panel_queries_a_provisioned_datasource_and_fits_the_grid():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "staybook.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    for path in DASHBOARDS:
        dashboard = load(path)
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in panels(dashboard):
            where = f"{path.name}: {panel['title']}"
            assert panel["targets"], where
            assert panel["datasource"]["uid"] in uids, where
            assert all(target["datasource"]["uid"] in uids for target in panel["targets"]), where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, where


def test_the_dashboard_provider_loads_the_dashboards_folder():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "staybook.yml").read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/staybook")


def test_every_promql_query_parses(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is missing (scripts/test installs the Debian package prometheus)")
        pytest.skip("promtool is missing")
    targets = promql_targets()
    assert len(targets) > 100
    # promtool parses expressions offline only as rules: one recording rule per query.
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, (_, _, e) in enumerate(targets)],
            }
        ]
    }
    rules_file = tmp_path / "dashboards.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_top_properties_table_runs_on_the_schema(pg_database_url):
    import psycopg

    queries = [
        target["rawSql"]
        for path in DASHBOARDS
        for panel in panels(load(path))
        for target in panel["targets"]
        if "rawSql" in target
    ]
    assert queries, "the executive dashboard's top properties table is missing"
    url = re.sub(r"^postgresql\+\w+://", "postgresql://", pg_database_url)
    with psycopg.connect(url) as conn:
        for query in queries:
            # Grafana's time filter macro, as its PostgreSQL datasource expands it.
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '6 hours' AND now()", query)
            conn.execute(sql).fetchall()
