"""A real Prometheus (Debian package) scraping a running staybook, with deploy/prometheus's rules loaded:
every dashboard query and every rule expression is evaluated through Prometheus's HTTP API after some
traffic. Each must be accepted; the panels named below must return data.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES
from tests.e2e.demo_process import running_demo
from tests.integration.test_grafana_dashboards import DASHBOARDS, GRAFANA_VARIABLES, panels

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = [ROOT / "deploy" / "prometheus" / "recording_rules.yml", ROOT / "deploy" / "prometheus" / "alerts.yml"]
PROMETHEUS_PORTS = range(19090, 19100)
STAYBOOK_PORTS = range(18600, 18610)

# (dashboard, panel title): panels that must show data after a search, a sign-in and a booking.
PANELS_WITH_DATA = [
    ("operations", "API request rate"),
    ("operations", "API latency"),
    ("operations", "API errors"),
    ("operations", "Requests by status class"),
    ("operations", "Slowest routes (p99)"),
    ("operations", "Process memory"),
    ("sla", "Availability"),
    ("sla", "Error rate"),
    ("sla", "Latency against the objectives"),
    ("sla", "Availability (30 days)"),
    ("sla", "Error budget left (30 days)"),
    ("executive", "Health score"),
    ("booking", "Booking success"),
    ("booking", "Booking route latency (p99)"),
    ("search", "Search route requests"),
    ("search", "Search route latency (p99)"),
    ("identity", "Auth route requests"),
    # The context metrics the business and application alerts read.
    ("booking", "Payments by result"),
    ("booking", "Hold to booking conversion"),
    ("executive", "Active users (sign-ins, last hour)"),
    ("search", "Search p99"),
]


def free_port_in(ports: range) -> int:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {ports.start}-{ports.stop - 1}")


@contextlib.contextmanager
def running_prometheus(directory: Path, target: str, token_file: Path) -> Iterator[str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        message = "prometheus is missing (scripts/test installs the Debian package)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port_in(PROMETHEUS_PORTS)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": [
            {
                "job_name": "staybook-api",
                "static_configs": [{"targets": [target]}],
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
            }
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log_path = directory / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready:\n" + log_path.read_text())
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive_traffic(url: str) -> None:
    """The README's guest path: sign in, search Paris, hold, pay; plus a miss and a refused sign-in."""
    check_in = date.today() + timedelta(days=45)
    check_out = check_in + timedelta(days=2)
    with httpx.Client(base_url=url + "/api/v1", timeout=10) as client:
        login = client.post("/auth/login", json={"email": "guest@staybook.demo", "password": "demo-guest-pass-42"})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        assert client.post("/auth/login", json={"email": "guest@staybook.demo", "password": "wrong"}).status_code == 401
        query = {"city": "Paris", "check_in": str(check_in), "check_out": str(check_out), "guests": 2}
        items = []
        for _ in range(100):  # the index fills from the seeding events in the background
            items = client.get("/search", params=query).json()["items"]
            if items:
                break
            time.sleep(0.3)
        assert items, "no Paris listing in the demo's search"
        held = client.post(
            "/bookings",
            headers=auth | {"Idempotency-Key": "metrics-hold"},
            json={
                "room_type_id": items[0]["room_type"]["room_type_id"],
                "check_in": str(check_in),
                "check_out": str(check_out),
                "guests": 2,
                "guest": {"name": "Ada", "email": "ada@example.com"},
            },
        )
        assert held.status_code == 201, held.text
        paid = client.post(
            f"/bookings/{held.json()['id']}/payment",
            headers=auth | {"Idempotency-Key": "metrics-pay"},
            json={"payment_method": "tok_success"},
        )
        assert paid.status_code == 200, paid.text
        client.get(f"/properties/{items[0]['property_id']}")
        client.get("/me", headers=auth)
        assert client.get("/no-such-route").status_code == 404


def query(prometheus: httpx.Client, expr: str) -> dict:
    return prometheus.get("/api/v1/query", params={"query": expr}).json()


def wait_for_data(prometheus: httpx.Client, expr: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = query(prometheus, expr)
        if answer["status"] == "success" and answer["data"]["result"]:
            return
        time.sleep(0.5)
    pytest.fail(f"no data for {expr} within {seconds} s: {answer}")


def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((rule.get("record") or rule["alert"], rule["expr"]))
    return found


def dashboard_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel["targets"]:
                if "expr" in target:
                    expr = target["expr"]
                    for variable, value in GRAFANA_VARIABLES.items():
                        expr = expr.replace(variable, value)
                    found.append((path.stem, panel["title"], expr))
    return found


def test_prometheus_scrapes_staybook_and_every_query_evaluates(tmp_path):
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "metrics-token"
    token_file.write_text(token)
    port = free_port_in(STAYBOOK_PORTS)
    with running_demo(tmp_path, properties=10, port=port, STAYBOOK_METRICS__TOKEN=token) as (url, _log):
        # Without the token the scrape is refused: Prometheus's data below came through it.
        assert httpx.get(url + "/metrics", timeout=5).status_code == 401
        with (
            running_prometheus(tmp_path, f"127.0.0.1:{port}", token_file) as prometheus_url,
            httpx.Client(base_url=prometheus_url, timeout=10) as prometheus,
        ):
            drive_traffic(url)
            # Two scrapes of the traffic, and the recording rules evaluated on them.
            wait_for_data(prometheus, 'count_over_time(up{job="staybook-api"}[1m]) >= 2')
            wait_for_data(prometheus, 'sum(staybook_http_requests_total{method="POST", route=~"(/api/v1)?/bookings"})')
            wait_for_data(prometheus, "staybook:booking_requests_success:ratio_rate5m")
            wait_for_data(prometheus, "staybook:health_score:percent")

            failures = []
            for name, expr in rule_expressions():
                answer = query(prometheus, expr)
                if answer["status"] != "success":
                    failures.append((name, answer.get("error")))
            results: dict[tuple[str, str], int] = {}
            for dashboard, title, expr in dashboard_queries():
                answer = query(prometheus, expr)
                if answer["status"] != "success":
                    failures.append((f"{dashboard}: {title}", answer.get("error")))
                    continue
                key = (dashboard, title)
                results[key] = results.get(key, 0) + len(answer["data"]["result"])
            assert failures == []
            assert len(results) == sum(
                len(panels(json.loads(path.read_text()))) - sql_panels(path) for path in DASHBOARDS
            )
            empty = [panel for panel in PANELS_WITH_DATA if not results.get(panel)]
            assert empty == [], f"panels without data: {empty}"
            # Nothing is wrong on a quiet demo: no alert fires.
            firing = query(prometheus, 'ALERTS{alertstate="firing"}')["data"]["result"]
            assert [alert["metric"]["alertname"] for alert in firing] == []


def sql_panels(path: Path) -> int:
    return sum(1 for panel in panels(json.loads(path.read_text())) if all("rawSql" in t for t in panel["targets"]))
