"""The web pages in a real browser: the journeys of guests, hosts and admins on `staybook demo`.

One demo server per test worker (SQLite, in-process bus, seeded data), a short hold TTL so the
expiry journey waits seconds, not minutes. Every page a journey reaches is screenshotted at
390 px and desktop width and checked with axe-core (see tests/e2e/browser.py).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.contract import checked_client
from tests.e2e.browser import CHROMIUM, CHROMIUM_FLAGS, DESKTOP, PageCheck, chromium_available
from tests.e2e.demo_process import running_demo

pytestmark = pytest.mark.e2e
HOLD_TTL_SECONDS = 12
GUEST = ("guest@staybook.demo", "demo-guest-pass-42")
HOST = ("host@staybook.demo", "demo-host-pass-42")
ADMIN = ("admin@staybook.demo", "demo-admin-pass-42")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not chromium_available():
        if os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing (scripts/test installs the chromium package)")
        pytest.skip(f"{CHROMIUM} is not installed")
    folder = tmp_path_factory.mktemp("web-demo")
    settings = {
        "STAYBOOK_BOOKING__HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "1000000",
        "STAYBOOK_LOG_LEVEL": "WARNING",
    }
    with running_demo(folder, properties=20, **settings) as (url, log):
        _wait_for_search(url)
        yield {"url": url, "db": folder / "demo" / "staybook.db", "folder": folder, "log": log}


def _wait_for_search(url: str) -> None:
    check_in = date.today() + timedelta(days=40)
    query = {"city": "Paris", "check_in": str(check_in), "check_out": str(check_in + timedelta(days=2))}
    for _ in range(200):  # the index fills from the seeding events in the background
        if httpx.get(url + "/api/v1/search", params=query, timeout=5).json().get("items"):
            return
        time.sleep(0.3)
    pytest.fail("the demo's search index stayed empty")


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(site, browser, request):
    """A fresh browser context (no cookies) and the page checker of this journey."""
    context = browser.new_context(base_url=site["url"], viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    check = PageCheck(request.node.name.removeprefix("test_"))
    check.watch(page)
    yield page, check
    context.close()
    check.assert_clean()


def sign_in(page, account: tuple[str, str]) -> None:
    page.goto("/login")
    page.fill("#email", account[0])
    page.fill("#password", account[1])
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def stay(offset_days: int, nights: int = 2) -> tuple[str, str]:
    check_in = date.today() + timedelta(days=offset_days)
    return str(check_in), str(check_in + timedelta(days=nights))


def search_paris_and_open_first(page, check, check_in: str, check_out: str, screenshots: bool) -> None:
    page.goto("/")
    page.fill("#city", "Par")
    page.wait_for_selector("#place-options option", state="attached")
    page.fill("#city", "Paris")
    page.fill("#check_in", check_in)
    page.fill("#check_out", check_out)
    page.fill("#guests", "2")
    if screenshots:
        check(page, "home")
    page.click("form.search button[type=submit]")
    page.wait_for_selector("#result-list .card")
    assert "city=Paris" in page.url and f"check_in={check_in}" in page.url  # the URL holds the query
    page.wait_for_selector("#map path.leaflet-interactive", state="attached")  # markers without tiles
    if screenshots:
        check(page, "results")
    page.click("#result-list .card h3 a")
    page.wait_for_selector(".offer")
    if screenshots:
        check(page, "property")


def reserve_and_hold(page, check, screenshots: bool) -> str:
    page.click(".offer a.button")
    if "/login" in page.url:
        page.fill("#email", GUEST[0])
        page.fill("#password", GUEST[1])
        page.click("main button[type=submit]")
    page.wait_for_selector("form[action='/checkout']")
    if screenshots:
        check(page, "checkout details")
    page.click("form[action='/checkout'] button[type=submit]")
    page.wait_for_selector(".countdown")
    return page.url.rsplit("/", 1)[-1]


def _signal_batches_accepted(url: str) -> float:
    """POST /signals answered 202, from the demo's metrics: Playwright does not see the beacons a
    page sends while it unloads, the server does."""
    metrics = httpx.get(url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("staybook_http_requests_total{") and 'route="/signals"' in line and 'status="202"' in line
    )


def test_guest_books_pays_downloads_ics_and_cancels(visit, site):
    page, check = visit
    check_in, check_out = stay(45)
    beacons_before = _signal_batches_accepted(site["url"])
    search_paris_and_open_first(page, check, check_in, check_out, screenshots=True)
    # Held through the form twice with one key: one booking, the same hold page.
    page.click(".offer a.button")
    page.fill("#email", GUEST[0])
    page.fill("#password", GUEST[1])
    check(page, "sign in")
    page.click("main button[type=submit]")
    page.wait_for_selector("form[action='/checkout']")
    # The results page (search, click) and the property page (view) each sent their batch when left.
    for _ in range(50):
        if _signal_batches_accepted(site["url"]) >= beacons_before + 2:
            break
        page.wait_for_timeout(100)
    assert _signal_batches_accepted(site["url"]) >= beacons_before + 2
    form = page.eval_on_selector("form[action='/checkout']", "f => Object.fromEntries(new FormData(f).entries())")
    first = page.request.post("/checkout", form=form)
    second = page.request.post("/checkout", form=form)
    assert first.ok and second.ok and first.url == second.url and "/checkout/" in first.url
    page.goto(first.url)
    page.wait_for_selector(".countdown-clock")
    clock = page.inner_text(".countdown-clock")
    page.wait_for_timeout(1500)
    assert page.inner_text(".countdown-clock") != clock  # the countdown runs
    check(page, "payment with countdown")
    page.fill("#payment_method", "tok_success")
    page.click("form[action$='/pay'] button[type=submit]")
    page.wait_for_selector(".status-confirmed")
    reference = page.inner_text("h1").split()[-1]
    booking_url = page.url.split("?")[0]
    check(page, "confirmation")
    with page.expect_download() as download:
        page.click("a[href$='booking.ics']")
    ics = Path(download.value.path()).read_text()
    assert "BEGIN:VCALENDAR" in ics and f"DTSTART;VALUE=DATE:{check_in.replace('-', '')}" in ics
    page.goto("/bookings")
    assert reference in page.inner_text("main")
    check(page, "my bookings")
    page.click(f"a[href='{booking_url.removeprefix(page.url.rsplit('/bookings', 1)[0])}']")
    page.click("a.button.danger")
    refund_text = page.inner_text(".notice")
    assert "you get back" in refund_text
    check(page, "cancel with refund")
    page.click("form[action$='/cancel'] button[type=submit]")
    page.wait_for_selector(".status-cancelled")
    assert "Refunded" in page.inner_text("main")
    check(page, "cancelled")
    # Every consumer took the journey's events (booking.confirmed feeds personalisation, for one).
    assert "event handler failed" not in site["log"].read_text()


def test_guest_card_is_declined_and_the_retry_pays(visit):
    page, check = visit
    check_in, check_out = stay(52)
    search_paris_and_open_first(page, check, check_in, check_out, screenshots=False)
    reserve_and_hold(page, check, screenshots=False)
    page.fill("#payment_method", "tok_decline")
    page.click("form[action$='/pay'] button[type=submit]")
    page.wait_for_selector("text=Your payment was declined")
    check(page, "declined")
    page.click("form[action$='/retry'] button[type=submit]")
    page.wait_for_selector(".countdown")
    page.fill("#payment_method", "tok_success")
    page.click("form[action$='/pay'] button[type=submit]")
    page.wait_for_selector(".status-confirmed")
    check(page, "confirmed after retry")


def test_guest_waits_out_the_hold_and_sees_the_expiry(visit):
    page, check = visit
    check_in, check_out = stay(58)
    search_paris_and_open_first(page, check, check_in, check_out, screenshots=False)
    reserve_and_hold(page, check, screenshots=False)
    page.wait_for_selector("text=Your hold has expired", timeout=(HOLD_TTL_SECONDS + 15) * 1000)
    check(page, "hold expired")
    # Paying after the hold is gone says so too (not a raw error).
    booking_id = page.url.rsplit("/", 1)[-1]
    page.goto(f"/checkout/{booking_id}")
    assert "Your hold has expired" in page.inner_text("main")


def test_form_without_its_csrf_token_is_refused(visit):
    page, check = visit
    sign_in(page, GUEST)
    page.goto("/account")
    refused = page.request.post("/account/profile", form={"name": "Mallory"})
    assert refused.status == 403
    assert "not sent from this site" in refused.text()
    forged = page.request.post("/account/profile", form={"name": "Mallory", "csrf_token": "forged"})
    assert forged.status == 403
    page.set_content(refused.text())  # what the visitor sees: a page, not problem+json
    assert page.inner_text("h1") == "Form refused"
    page.goto("/account")
    assert page.input_value("#name") != "Mallory"
    accepted = page.request.post("/account/profile", form={"name": "Gwen Guest", "csrf_token": _csrf(page)})
    assert accepted.ok
    check(page, "account")


def _csrf(page) -> str:
    return page.eval_on_selector("input[name=csrf_token]", "e => e.value")


def test_guest_turns_on_mfa_and_signs_in_with_a_code(visit):
    page, check = visit
    email = f"mfa-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/register")
    page.fill("#name", "Mia Factor")
    page.fill("#email", email)
    page.fill("#password", "correct-horse-battery")
    check(page, "register")
    page.click("main button[type=submit]")
    page.wait_for_selector("#mfa-title")
    page.click("form[action='/account/mfa/start'] button")
    page.wait_for_selector(".qr svg")
    check(page, "mfa setup with qr")
    secret = page.inner_text("#totp-secret")
    totp = pyotp.TOTP(secret)
    page.fill("#totp_code", totp.now())
    page.click("form[action='/account/mfa/confirm'] button")
    page.wait_for_selector("#recovery-codes")
    assert len(page.query_selector_all("#recovery-codes li")) >= 4
    check(page, "recovery codes")
    page.click("header form[action='/logout'] button")
    sign_in(page, (email, "correct-horse-battery"))
    page.wait_for_selector("#code")
    check(page, "mfa code")
    # The enrolment code may not be used twice in its 30 seconds: take the next window's code.
    page.fill("#code", totp.at(datetime.now(UTC) + timedelta(seconds=30)))
    page.click("main button[type=submit]")
    page.wait_for_selector("a[href='/account']")
    page.goto("/account")
    assert "Two-step sign-in is on." in page.inner_text("main")


def _photo(folder: Path) -> Path:
    from PIL import Image

    path = folder / "facade.jpg"
    Image.new("RGB", (1200, 800), (40, 110, 170)).save(path, "JPEG", quality=85)
    return path


def test_host_lists_a_property_with_a_photo_prices_the_calendar_and_sees_the_booking(visit, site):
    page, check = visit
    sign_in(page, HOST)
    page.goto("/host")
    check(page, "dashboard")
    page.goto("/host/properties/new")
    page.fill("#name", "Canal View Lofts")
    page.fill("#description", "Bright lofts by the canal.")
    page.fill("#address", "12 Quai de Jemmapes")
    page.fill("#p_city", "Paris")
    page.fill("#latitude", "48.8721")
    page.fill("#longitude", "2.3655")
    page.check("input[name=amenities][value=wifi]")
    check(page, "new property")
    page.click("form[action='/host/properties/new'] button[type=submit]")
    page.wait_for_selector("text=The property is listed")
    property_url = page.url.split("?")[0]
    page.set_input_files("#photo", str(_photo(site["folder"])))
    page.click("form[data-upload] button[type=submit]")
    page.wait_for_url("**uploaded=1**")
    for _ in range(50):  # the worker makes the variants in the background
        if page.query_selector(".photo-list img"):
            break
        page.wait_for_timeout(200)
        page.reload()
    assert page.query_selector(".photo-list img"), "the photo's variants did not appear"
    page.fill("#rt_name", "Loft")
    page.fill("#rt_units", "2")
    page.fill("#rt_price", "99")
    check(page, "property with photo")
    page.click("form[action$='/room-types'] button[type=submit]")
    page.wait_for_selector(".grid-calendar")
    room_type_id = page.url.split("/room-types/")[1].split("/")[0]
    check_in, check_out = stay(65, nights=3)
    month = check_in[:7]
    page.goto(page.url.split("?")[0] + f"?month={month}")
    page.click(f"button[data-night='{check_in}']")
    last_night = str(date.fromisoformat(check_out) - timedelta(days=1))
    page.click(f"button[data-night='{last_night}']")
    assert page.input_value("#start") == check_in and page.input_value("#end") == last_night
    page.fill("#price", "150")
    page.click("#range-form button[type=submit]")
    page.wait_for_selector("text=3 nights changed")
    assert "€150.00" in page.inner_text(f"button[data-night='{check_in}']")
    assert page.input_value("#feed-url").startswith(site["url"] + f"/api/v1/room-types/{room_type_id}/calendar.ics")
    check(page, "calendar grid")
    reference = _guest_books_over_the_api(site["url"], room_type_id, check_in, check_out)
    page.goto("/host/bookings")
    assert reference in page.inner_text("main")
    check(page, "host bookings")
    page.click(f"text={reference}")
    assert "Canal View Lofts" in page.inner_text("main") and "€450.00" in page.inner_text("main")
    check(page, "host booking details")
    page.goto(f"/host/room-types/{room_type_id}/calendar?month={month}")
    assert "1/2" in page.inner_text(f"button[data-night='{check_in}']")  # booked nights show on the grid
    page.goto(property_url)


def _guest_books_over_the_api(url: str, room_type_id: str, check_in: str, check_out: str) -> str:
    with checked_client(url + "/api/v1", timeout=15) as client:
        login = client.post("/auth/login", json={"email": GUEST[0], "password": GUEST[1]}).json()
        auth = {"authorization": f"Bearer {login['access_token']}"}
        held = client.post(
            "/bookings",
            headers=auth | {"Idempotency-Key": uuid.uuid4().hex},
            json={"room_type_id": room_type_id, "check_in": check_in, "check_out": check_out, "guests": 2,
                  "guest": {"name": "Gwen Guest", "email": "gwen@example.com"}},
        )  # fmt: skip
        assert held.status_code == 201, held.text
        paid = client.post(
            f"/bookings/{held.json()['id']}/payment",
            headers=auth | {"Idempotency-Key": uuid.uuid4().hex},
            json={"payment_method": "tok_success"},
        )
        assert paid.status_code == 200, paid.text
        return held.json()["reference"]


def _dead_letter_in_demo(db: Path) -> tuple[str, str]:
    """A dead letter as the consumer runner writes one when `notifications.user.signed_in` gives up
    (its mail server was away): a sign-in event the demo published, under a new event id. How the
    runner gets there on a real failure is tests/integration/test_dead_letters.py; here the admin's
    page and its replay are what is tried, against the demo's real consumer."""
    import json
    import sqlite3

    with sqlite3.connect(db, timeout=30) as connection:
        subject, payload, headers = connection.execute(
            "SELECT subject, payload, headers FROM outbox WHERE event_type = 'user.signed_in' LIMIT 1"
        ).fetchone()
        event_id, letter_id = uuid.uuid4(), uuid.uuid4()
        envelope = {
            "id": str(event_id), "subject": subject, "type": "user.signed_in",
            "occurred_at": datetime.now(UTC).isoformat(), "payload": json.loads(payload),
            "headers": json.loads(headers),
        }  # fmt: skip
        connection.execute(
            "INSERT INTO dead_letters (id, consumer, event_id, subject, envelope, error, attempts, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (letter_id.hex, "notifications.user.signed_in", event_id.hex, subject, json.dumps(envelope),
             "SMTPServerDisconnected: Connection unexpectedly closed", 5,
             datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
        )  # fmt: skip
    return str(letter_id), event_id.hex


def test_admin_sees_health_replays_a_dead_letter_verifies_the_audit_chain_and_locks_a_user(visit, site):
    page, check = visit
    outsider = (f"mallory-{uuid.uuid4().hex[:8]}@example.com", "correct-horse-battery")
    registered = httpx.post(
        site["url"] + "/api/v1/auth/register",
        json={"email": outsider[0], "password": outsider[1], "name": "Mallory Outsider", "role": "guest"},
    )
    assert registered.status_code == 201, registered.text
    sign_in(page, ADMIN)
    page.goto("/admin")
    assert "database" in page.inner_text("#health-checks") and "Every part answers." in page.inner_text("main")
    check(page, "health")

    letter_id, event_id = _dead_letter_in_demo(site["db"])
    page.goto("/admin/dead-letters")
    consumers = page.inner_text("#consumers")
    assert "catalog.photo-variants" in consumers and "identity.audit-bookings" in consumers  # every consumer
    assert "SMTPServerDisconnected" in page.inner_text(f"#letter-{letter_id}")
    check(page, "dead letters")
    page.click(f"#letter-{letter_id} button[type=submit]")
    page.wait_for_selector("text=The event was handled by its consumer.")
    assert not page.query_selector(f"#letter-{letter_id}")
    check(page, "dead letter replayed")
    page.click("a[href*='state=replayed']")
    assert page.query_selector(f"#letter-{letter_id}") and not page.query_selector(f"#letter-{letter_id} form")
    import sqlite3

    with sqlite3.connect(site["db"], timeout=30) as connection:  # the consumer really ran: its inbox has the event
        handled = connection.execute(
            "SELECT count(*) FROM inbox WHERE consumer = 'notifications.user.signed_in' AND event_id = ?", (event_id,)
        ).fetchone()[0]
    assert handled == 1

    page.goto("/admin/audit")
    page.click("#verify-chain")
    page.wait_for_selector("#chain-result .notice")
    assert "The chain is intact" in page.inner_text("#chain-result")
    check(page, "audit log verified")

    page.goto("/admin/users")
    row = f"tr[data-email='{outsider[0]}']"
    page.select_option(f"{row} select[name=role]", "host")
    page.click(f"{row} form[action$='/role'] button")
    page.wait_for_selector("text=The role is changed.")
    page.click(f"{row} form[action$='/lock'] button")
    page.wait_for_selector("text=The account is locked")
    assert "locked" in page.inner_text(f"{row} .state")
    check(page, "user locked")
    refused = httpx.post(site["url"] + "/api/v1/auth/login", json={"email": outsider[0], "password": outsider[1]})
    assert refused.status_code == 403 and "locked" in refused.json()["detail"]
    page.goto("/admin/audit?action=user.locked")
    assert "user.locked" in page.inner_text("main")
