"""Server-rendered pages (mounted at the site root, not under /api/v1): the guest's pages here,
the account's, the host extranet's and the admin's in their own modules, all on `WebRoute`
(session, CSRF, errors as pages). Static files are served from the package, compressed once."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from staybook.booking import service as booking
from staybook.booking.bootstrap import BookingDep
from staybook.booking.schemas import GuestDetails, HoldRequest, PaymentRequest
from staybook.catalog import service as catalog
from staybook.catalog.schemas import AMENITIES, PROPERTY_TYPES
from staybook.identity import service as identity
from staybook.identity.bootstrap import IdentityDep
from staybook.kernel.dates import stay_fields_in
from staybook.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound, StaybookError, Unauthorized
from staybook.kernel.security import Principal
from staybook.personalization import service as personalization
from staybook.search.bootstrap import SearchDep, search_deps
from staybook.search.query import MAX_GUESTS
from staybook.web import i18n
from staybook.web import service as pages
from staybook.web.account import router as account_router
from staybook.web.admin import router as admin_router
from staybook.web.host import router as host_router
from staybook.web.ical import booking_calendar
from staybook.web.rendering import WebRoute, page_state, redirect, render, serve_page
from staybook.web.schemas import CancelForm, CheckoutForm, PaymentForm, parse_form

router = APIRouter(tags=["web"], include_in_schema=False, route_class=WebRoute)
static_router = APIRouter(tags=["web"], include_in_schema=False)

SANDBOX_TOKENS = (
    ("tok_success", "Pays (authorised and captured)"),
    ("tok_decline", "Declined by the bank"),
    ("tok_insufficient_funds", "Declined: insufficient funds"),
)


def signed_in(request: Request, *roles: str) -> Principal:
    """The visitor's principal; not signed in -> the sign-in page, wrong role -> 403 page."""
    _, session, _ = page_state(request)
    if session.principal is None:
        raise Unauthorized("Please sign in to continue.")
    if roles and session.principal.role not in roles:
        raise Forbidden("This page is for another kind of account.")
    return session.principal


def signals_session(request: Request) -> str:
    """The signed session id the page's signals beacon carries (bound to the user when signed in)."""
    runtime, session, _ = page_state(request)
    return personalization.session_id_for(runtime.settings, session.principal.user_id if session.principal else None)


def _date_param(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- home and results


@router.get("/")
async def home(request: Request) -> Response:
    check_in, check_out = pages.default_stay(datetime.now(UTC).date())
    return render(request, "home.html", check_in=check_in, check_out=check_out, max_guests=MAX_GUESTS)


@router.get("/suggest")
async def suggest(request: Request, searches: SearchDep) -> Response:
    items = await pages.suggestions(searches, request.query_params.get("city", ""))
    return render(request, "_suggestions.html", items=items)


@router.get("/results")
async def results(request: Request, searches: SearchDep) -> Response:
    runtime, _, _ = page_state(request)
    query = request.query_params
    form = {name: query.get(name, "") for name in pages.RESULT_PARAMS}
    form["amenities"] = query.getlist("amenities")
    context = {
        "form": form,
        "amenity_choices": AMENITIES,
        "property_types": PROPERTY_TYPES,
        "sorts": pages.SORT_CHOICES,
        "answer": None,
        "problem": None,
        "stay_query": "",
    }
    try:
        settings = runtime.settings
        params = pages.search_params(query, settings.search.default_currency, settings.web.results_per_page)
        answer = await pages.results(searches, params)
    except StaybookError as error:
        context["problem"] = {"detail": error.detail, "errors": error.extensions.get("errors") or []}
        return render(request, "results.html", status=200, **context)
    stay = f"check_in={params.check_in}&check_out={params.check_out}&guests={params.guests}"
    next_query = None
    if answer["next_cursor"]:
        kept = [(k, v) for k, v in query.multi_items() if k != "cursor"]
        next_query = "/results?" + _encode([*kept, ("cursor", answer["next_cursor"])])
    first_query = "/results?" + _encode([(k, v) for k, v in query.multi_items() if k != "cursor"])
    nights = (params.check_out - params.check_in).days
    return render(
        request,
        "results.html",
        signals_session=signals_session(request),
        **{
            **context,
            "answer": answer,
            "stay_query": stay,
            "next_query": next_query,
            "first_query": first_query,
            "nights": nights,
            "paged": bool(params.cursor),
        },  # fmt: skip
    )


def _encode(items: list[tuple[str, str]]) -> str:
    return urlencode(items)


# --------------------------------------------------------------------------- property page


@router.get("/properties/{property_id}")
async def property_page(property_id: uuid.UUID, request: Request) -> Response:
    runtime, _, _ = page_state(request)
    listing = await pages.listing(runtime, property_id)
    prop, photos = listing.prop, listing.photos
    if prop.status != "active":
        raise NotFound("This property is no longer listed.")
    today = pages.property_today(prop.timezone)
    default_in, default_out = pages.default_stay(today)
    check_in = _date_param(request, "check_in") or default_in
    check_out = _date_param(request, "check_out") or default_out
    try:
        guests = max(1, min(MAX_GUESTS, int(request.query_params.get("guests", "2"))))
    except ValueError:
        guests = 2
    offers, problem = None, None
    try:
        offers = await pages.availability(runtime, property_id, check_in, check_out, guests)
    except StaybookError as error:
        problem = error.detail
    month = pages.month_of(request.query_params.get("month"), check_in, today)
    # The calendar shows the room the guest would book: the first bookable one, else the first.
    bookable = {o["room_type_id"] for o in (offers or {}).get("room_types", ()) if o["bookable"]}
    calendar_room = next((r for r in prop.room_types if str(r.id) in bookable), None) or (
        prop.room_types[0] if prop.room_types else None
    )
    weeks = []
    if calendar_room is not None:
        nights = await pages.guest_month(runtime, property_id, calendar_room.id, month)
        weeks = pages.month_grid(month, nights, today)
    return render(
        request,
        "property.html",
        prop=prop,
        photos=photos,
        check_in=check_in,
        check_out=check_out,
        guests=guests,
        nights=(check_out - check_in).days,
        offers=offers,
        problem=problem,
        month=month,
        month_label=i18n.month_name(month.year, month.month, page_state(request)[2]),
        weekdays=i18n.weekday_names(page_state(request)[2]),
        weeks=weeks,
        previous_month=pages.previous_month(month),
        next_month=pages.next_month(month),
        calendar_room=calendar_room,
        signals_session=signals_session(request),
    )


# --------------------------------------------------------------------------- checkout


@router.get("/checkout")
async def checkout(request: Request, creds: IdentityDep) -> Response:
    principal = signed_in(request, "guest", "admin")
    runtime, _, _ = page_state(request)
    query = request.query_params
    try:
        room_type_id = uuid.UUID(query.get("room_type_id", ""))
        check_in = date.fromisoformat(query.get("check_in", ""))
        check_out = date.fromisoformat(query.get("check_out", ""))
        guests = int(query.get("guests", "1"))
    except ValueError:
        raise InvalidInput("Choose a room, dates and guests on the property page first.") from None
    property_id = await pages.property_of_room_type(runtime, room_type_id)
    offers = await pages.availability(runtime, property_id, check_in, check_out, guests)
    offer = next((o for o in offers["room_types"] if o["room_type_id"] == str(room_type_id)), None)
    prop = (await pages.listing(runtime, property_id)).prop
    # The offers list the active room types, as the listing does: an offer has its room type there.
    room_type = next((r for r in prop.room_types if r.id == room_type_id), None)
    if offer is None or room_type is None or not offer["bookable"]:
        return render(request, "outcome_sold_out.html", status=409, prop=prop, check_in=check_in,
                      check_out=check_out, guests=guests)  # fmt: skip
    me = await identity.get_me(runtime, creds, principal)
    return render(
        request,
        "checkout.html",
        prop=prop,
        room_type=room_type,
        offer=offer,
        check_in=check_in,
        check_out=check_out,
        guests=guests,
        nights=(check_out - check_in).days,
        me=me,
        idempotency_key=uuid.uuid4().hex,
    )


@router.post("/checkout")
async def place_hold(request: Request) -> Response:
    principal = signed_in(request, "guest", "admin")
    runtime, _, locale = page_state(request)
    form = parse_form(CheckoutForm, await request.form())
    hold = HoldRequest(
        room_type_id=form.room_type_id,
        check_in=form.check_in,
        check_out=form.check_out,
        guests=form.guests,
        guest=GuestDetails(name=form.name, email=form.email, phone=form.phone, locale=locale),
    )
    return await _hold_and_go(request, principal, hold, form.idempotency_key)


async def _hold_and_go(request: Request, principal: Principal, hold: HoldRequest, key: str) -> Response:
    runtime, _, _ = page_state(request)

    async def work(claim):
        with stay_fields_in("body"):
            return 201, await booking.place_hold(runtime, principal, hold, claim)

    try:
        status, body, _ = await pages.once(runtime, principal, key, "/checkout", hold.model_dump(mode="json"), work)
    except Conflict as error:
        return await _sold_out(request, hold, error)
    if status >= 400:  # a refusal replayed: the first answer
        if status == 409:
            return await _sold_out(request, hold, None)
        raise StaybookError(body.get("detail", "This booking could not be made."))
    return redirect(f"/checkout/{body['id']}")


async def _sold_out(request: Request, hold: HoldRequest, error: Conflict | None) -> Response:
    runtime, _, _ = page_state(request)
    room_type = await catalog.get_room_type(runtime, hold.room_type_id)
    prop = await catalog.get_property(runtime, room_type.property_id)
    nights = (error.extensions.get("nights") if error else None) or []
    return render(request, "outcome_sold_out.html", status=409, prop=prop, check_in=hold.check_in,
                  check_out=hold.check_out, guests=hold.guests, nights=nights)  # fmt: skip


@router.get("/checkout/{booking_id}")
async def pay_page(booking_id: uuid.UUID, request: Request) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    view = await booking.get_booking(runtime, principal, booking_id)
    if view["status"] == "confirmed" or view["status"] == "cancelled":
        return redirect(f"/bookings/{booking_id}")
    if view["status"] == "payment_failed":
        return render(request, "outcome_declined.html", status=402, booking=view, idempotency_key=uuid.uuid4().hex)
    seconds_left = pages.hold_seconds_left(view)
    if view["status"] == "expired" or seconds_left <= 0:
        return render(request, "outcome_expired.html", status=410, booking=view)
    return render(
        request,
        "pay.html",
        booking=view,
        seconds_left=seconds_left,
        tokens=SANDBOX_TOKENS if _show_tokens(runtime) else (),
        idempotency_key=uuid.uuid4().hex,
    )


def _show_tokens(runtime) -> bool:
    configured = runtime.settings.web.show_test_tokens
    return configured if configured is not None else runtime.settings.environment in ("demo", "test")


@router.post("/checkout/{booking_id}/pay")
async def pay(booking_id: uuid.UUID, request: Request, bookings: BookingDep) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    form = parse_form(PaymentForm, await request.form())
    payment = PaymentRequest(payment_method=form.payment_method)

    async def work(claim):
        return await booking.pay(runtime, bookings, principal, booking_id, payment.payment_method, claim)

    path = f"/checkout/{booking_id}/pay"
    try:
        status, body, _ = await pages.once(runtime, principal, form.idempotency_key, path,
                                           payment.model_dump(mode="json"), work)  # fmt: skip
    except Conflict:
        status, body = 409, None
    if status == 200:
        return redirect(f"/bookings/{booking_id}?confirmed=1")
    view = await booking.get_booking(runtime, principal, booking_id)
    if status == 402 or view["status"] == "payment_failed":
        detail = (body or {}).get("detail") if isinstance(body, dict) else None
        return render(request, "outcome_declined.html", status=402, booking=view, detail=detail,
                      idempotency_key=uuid.uuid4().hex)  # fmt: skip
    if status == 202:
        return render(request, "outcome_pending.html", status=202, booking=view)
    return render(request, "outcome_expired.html", status=410, booking=view)


@router.post("/checkout/{booking_id}/retry")
async def retry(booking_id: uuid.UUID, request: Request) -> Response:
    """A declined payment released its hold: a new hold of the same stay, then the payment page."""
    principal = signed_in(request, "guest", "admin")
    runtime, _, _ = page_state(request)
    form = await request.form()
    view = await booking.get_booking(runtime, principal, booking_id)
    hold = HoldRequest(
        room_type_id=uuid.UUID(view["room_type"]["room_type_id"]),
        check_in=date.fromisoformat(view["check_in"]),
        check_out=date.fromisoformat(view["check_out"]),
        guests=view["guests"],
        units=view["units"],
        guest=GuestDetails(**{k: v for k, v in view["guest"].items() if k in ("name", "email", "phone", "locale")}),
    )
    key = str(form.get("idempotency_key") or "")[:100] or uuid.uuid4().hex
    return await _hold_and_go(request, principal, hold, key)


# --------------------------------------------------------------------------- bookings


@router.get("/bookings")
async def my_bookings(request: Request) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    upcoming, past = await pages.guest_bookings(runtime, principal)
    return render(request, "bookings.html", upcoming=upcoming, past=past)


@router.get("/bookings/{booking_id}")
async def booking_page(booking_id: uuid.UUID, request: Request) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    view = await booking.get_booking(runtime, principal, booking_id)
    if view["status"] == "held":
        return redirect(f"/checkout/{booking_id}")
    cancellable = view["status"] == "confirmed" and date.fromisoformat(view["check_in"]) >= datetime.now(UTC).date()
    return render(
        request,
        "confirmation.html",
        booking=view,
        just_confirmed=request.query_params.get("confirmed") == "1",
        cancellable=cancellable,
    )


@router.get("/bookings/{booking_id}/booking.ics")
async def booking_ics(booking_id: uuid.UUID, request: Request) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    view = await booking.get_booking(runtime, principal, booking_id)
    if view["status"] != "confirmed":
        raise Conflict("Only a confirmed booking has a calendar entry.")
    return Response(
        booking_calendar(view),
        media_type="text/calendar; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="staybook-{view["reference"]}.ics"'},
    )


@router.get("/bookings/{booking_id}/cancel")
async def cancel_page(booking_id: uuid.UUID, request: Request) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    view = await booking.get_booking(runtime, principal, booking_id)
    if view["status"] != "confirmed":
        raise Conflict("Only a confirmed booking can be cancelled.")
    # A host or an admin cancelling refunds in full; a guest by the policy.
    by_guest = principal.user_id == uuid.UUID(view["guest_user_id"])
    refund = pages.refund_preview(view) if by_guest else view["total"]["amount"]
    return render(request, "cancel.html", booking=view, refund=refund, idempotency_key=uuid.uuid4().hex)


@router.post("/bookings/{booking_id}/cancel")
async def cancel(booking_id: uuid.UUID, request: Request, bookings: BookingDep) -> Response:
    principal = signed_in(request)
    runtime, _, _ = page_state(request)
    form = parse_form(CancelForm, await request.form())

    async def work(claim):
        return 200, await booking.cancel(runtime, bookings, principal, booking_id, form.reason, claim)

    path = f"/bookings/{booking_id}/cancel"
    await pages.once(runtime, principal, form.idempotency_key, path, {"reason": form.reason}, work)
    return redirect(f"/bookings/{booking_id}")


# --------------------------------------------------------------------------- language, static


@router.get("/language/{locale}")
async def language(locale: str, request: Request) -> Response:
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = redirect(target)
    if locale in i18n.LOCALES:
        response.set_cookie(i18n.LANG_COOKIE, locale, max_age=365 * 86_400, path="/", samesite="lax")
    return response


STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@cache
def _static(path: str) -> tuple[bytes, bytes, str] | None:
    """(bytes, gzip bytes, content type) of a file under static/, read and compressed once."""
    if ".." in path or path.startswith("/") or "\\" in path:
        return None
    suffix = "." + path.rsplit(".", 1)[-1] if "." in path else ""
    if suffix not in STATIC_TYPES:
        return None
    resource = resources.files("staybook.web") / "static" / path
    if not resource.is_file():
        return None
    data = resource.read_bytes()
    return data, gzip.compress(data, compresslevel=9), STATIC_TYPES[suffix]


@static_router.get("/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    found = _static(path)
    if found is None:
        raise NotFound(f"No static file {path}")
    data, compressed, content_type = found
    headers = {"cache-control": "public, max-age=86400", "vary": "Accept-Encoding"}
    if content_type.startswith(("text/", "image/svg")) and "gzip" in request.headers.get("accept-encoding", ""):
        headers["content-encoding"] = "gzip"
        data = compressed
    return Response(data, media_type=content_type, headers=headers)


router.include_router(account_router)
router.include_router(host_router)
router.include_router(admin_router)
router.include_router(static_router)


class PageFastPath:
    """Serves `GET /results` without FastAPI's route matching and request handling, a tenth of
    the page's CPU (the app tries every route in order, then prepares the call): the same page
    function through `serve_page`, the session, CSRF and error handling every `WebRoute` has.
    Installed inside the kernel's middleware, like search's fast path, so request ids, trace
    context, metrics, the per-IP rate limit and security headers apply as to routed pages. Until
    the route has been matched once (it labels the request in the metrics), and for any other
    method, requests go on to the router unchanged."""

    PAGES = {"/results": lambda request: results(request, search_deps(request.app.state.runtime))}

    def __init__(self, app, prefix: str = "") -> None:
        self.app = app
        self.pages = {prefix + path: page for path, page in self.PAGES.items()}
        self.routes: dict[str, object] = {}

    async def __call__(self, scope, receive, send) -> None:
        page = self.pages.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        route = self.routes.get(scope["path"]) if page is not None else None
        if route is None:
            await self.app(scope, receive, send)
            if page is not None and scope.get("route") is not None:
                self.routes[scope["path"]] = scope["route"]
            return
        scope["route"] = route
        response = await serve_page(Request(scope, receive), page)
        await response(scope, receive, send)


MIDDLEWARE = (PageFastPath,)
