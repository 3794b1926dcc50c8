"""`staybook demo` on a fresh directory: comes up with nothing configured and answers like production."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from datetime import date, timedelta

import pytest

from staybook.identity.seed import DEMO_ACCOUNTS
from tests.contract import checked_client
from tests.e2e.demo_process import STAYBOOK, running_demo


@pytest.fixture
def demo_server(tmp_path):
    with running_demo(tmp_path) as (url, log):
        yield url, log


def test_demo_serves_health_metrics_openapi_and_problems(demo_server):
    url, log = demo_server
    with checked_client(url, timeout=10) as client:
        assert client.get("/healthz/live").json() == {"status": "ok"}
        ready = client.get("/healthz/ready").json()
        assert ready["checks"]["database"] == "ok"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "staybook_http_requests_total" in metrics.text
        spec = client.get("/openapi.json").json()
        assert spec["info"]["title"] == "staybook"
        assert client.get("/docs").status_code == 200
        missing = client.get("/api/v1/no-such-thing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["status"] == 404
    printed = log.read_text()
    assert f"staybook demo on {url}" in printed


def test_the_banner_comes_once_the_server_answers_and_the_accounts_on_every_start(tmp_path):
    with running_demo(tmp_path, properties=0) as (url, log):
        first = log.read_text()
    with running_demo(tmp_path, properties=0) as (url, log):
        second = log.read_text()
    for printed in (first, second):
        assert printed.index("Application startup complete") < printed.index("staybook demo on http://127.0.0.1:")
        for role, email, _, password in DEMO_ACCOUNTS:
            assert f"demo {role}: {email} / {password}" in printed
    assert "existing demo data kept" not in first and "existing demo data kept" in second


def test_demo_guest_books_paris_as_the_readme_shows(demo_server):
    """The README's guest path on the demo: sign in, search Paris, hold, pay, confirmed, mail."""
    url, log = demo_server
    check_in = date.today() + timedelta(days=60)
    check_out = check_in + timedelta(days=3)
    with checked_client(url + "/api/v1", timeout=10) as client:
        login = client.post("/auth/login", json={"email": "guest@staybook.demo", "password": "demo-guest-pass-42"})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        query = {"city": "Paris", "check_in": str(check_in), "check_out": str(check_out), "guests": 2}
        items = []
        for _ in range(100):  # the index fills from the seeding events in the background
            items = client.get("/search", params=query).json()["items"]
            if items:
                break
            time.sleep(0.3)
        assert items and all(item["city"] == "Paris" for item in items)
        held = client.post(
            "/bookings",
            headers=auth | {"Idempotency-Key": "readme-hold"},
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
            headers=auth | {"Idempotency-Key": "readme-pay"},
            json={"payment_method": "tok_success"},
        )
        assert paid.status_code == 200, paid.text
        assert client.get(f"/bookings/{held.json()['id']}", headers=auth).json()["status"] == "confirmed"
    # The sandbox's webhooks go to the port the demo serves, not to the default 8000.
    database = log.parent / "demo" / "staybook.db"
    for _ in range(100):
        with contextlib.closing(sqlite3.connect(database)) as connection:
            webhooks = connection.execute("SELECT delivered_at, last_error FROM sandbox_webhooks").fetchall()
        if webhooks and all(delivered for delivered, _ in webhooks):
            break
        time.sleep(0.3)
    assert webhooks and all(delivered and error is None for delivered, error in webhooks), webhooks
    mail_dir = log.parent / "staybook-mail"
    for _ in range(100):  # the worker mails after the events' batch window and its sender's pass
        if any("ada@example.com" in mail.read_text(errors="replace") for mail in mail_dir.glob("*.eml")):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"no mail to the guest in {mail_dir}")


def test_check_reports_configuration_and_failing_connections(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
    env |= {
        "STAYBOOK_DATABASE_URL": f"sqlite:///{tmp_path}/check.db",
        "STAYBOOK_SECRET_KEY": "s3cr3t-" + "x" * 30,
        "STAYBOOK_CATALOG__MEDIA_DIR": str(tmp_path / "media"),
    }
    subprocess.run([STAYBOOK, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    ok = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "s3cr3t" not in ok.stdout and "ok     database (sqlite)" in ok.stdout
    assert "ok     photo store (local directory)" in ok.stdout
    env["STAYBOOK_REDIS_URL"] = "redis://127.0.0.1:1/0"
    failing = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert failing.returncode == 1
    assert "FAILED redis" in failing.stderr


def test_check_reaches_the_photo_bucket(tmp_path, s3_bucket_settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
    env |= {"STAYBOOK_DATABASE_URL": f"sqlite:///{tmp_path}/check.db"}
    env |= {f"STAYBOOK_CATALOG__{name.upper()}": str(value) for name, value in s3_bucket_settings.items()}
    subprocess.run([STAYBOOK, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    ok = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert f"ok     photo store (s3 bucket {s3_bucket_settings['s3_bucket']})" in ok.stdout
    # staybook does not create buckets: a missing one fails the check, naming it.
    env["STAYBOOK_CATALOG__S3_BUCKET"] = "staybook-no-such-bucket"
    failing = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert failing.returncode == 1
    assert "FAILED photo store (s3 bucket staybook-no-such-bucket)" in failing.stderr
