"""The composition root: wires the kernel and every context into one ASGI app.

Each context package is discovered by convention, so adding a context does not
touch this file beyond the CONTEXTS list:

- `<context>.api.router`: routes, mounted under `/api/v1` (the `web` context at `/`);
- `<context>.bootstrap.SUBSCRIPTIONS`: `Subscription` / `ReplicaSubscription` handlers;
- `<context>.jobs.JOBS`: `PeriodicJob`s the worker repeats;
- `<context>.seed.seed_demo(runtime, properties=, seed=)`: demo data (`staybook seed`, the demo);
- `<context>.service.export_personal_data(runtime, user_id)`: the context's part of a user's
  GDPR export;
- `<context>.bootstrap.lifespan(runtime)`: an optional async context manager for
  context-owned resources (search index, payment provider, mailer). What it yields is the
  context's deps: bound into its subscriptions and jobs (their last argument) and kept in
  `runtime.context_deps` for its routes (`kernel.runtime.context_dependency`).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from types import ModuleType

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from staybook.kernel import api as operations_api
from staybook.kernel import openapi
from staybook.kernel.errors import install_error_handlers
from staybook.kernel.gateway import GatewayMiddleware
from staybook.kernel.http import BodySizeLimitMiddleware, RequestContextMiddleware
from staybook.kernel.runtime import Adapters, Runtime, Wiring
from staybook.kernel.settings import Settings
from staybook.kernel.telemetry import configure_logging, configure_tracing, shutdown_tracing
from staybook.kernel.worker import Worker

API_PREFIX = "/api/v1"
# Order matters only for lifespans: they are entered in this order and left in reverse.
CONTEXTS = (
    "identity",
    "catalog",
    "inventory",
    "payments",
    "booking",
    "search",
    "notifications",
    "personalization",
    "web",
)
# Contexts that publish events get a JetStream stream each.
PUBLISHING_CONTEXTS = (
    "identity", "catalog", "inventory", "booking", "payments", "notifications", "personalization", "search",
)  # fmt: skip

# The OpenAPI document's tags, one per context, in the order Swagger UI lists them.
OPENAPI_TAGS = [
    {"name": "identity", "description": "Accounts and sign-in: register, log in (tokens), refresh, MFA, the "
     "signed-in user (/me), GDPR export and erasure; admins manage users and read the audit log."},
    {"name": "catalog", "description": "Properties, their room types, photos and publication, as hosts "
     "manage them and guests read them."},
    {"name": "inventory", "description": "Calendars (price and allotment per night), availability and "
     "quotes for a stay, iCal channel import and export."},
    {"name": "search", "description": "Search stays by place, dates, guests, price and amenities; suggest "
     "places; admins rebuild the index online."},
    {"name": "booking", "description": "Hold a room type for a stay, pay for it, cancel it; the guest's and "
     "the host's lists. Holds and payments take an Idempotency-Key."},
    {"name": "payments", "description": "The payment provider's signed webhooks."},
    {"name": "notifications", "description": "A user's notification preferences and one-click unsubscribe."},
    {"name": "personalization", "description": "Browsing signals in, sessions and profiles, recommendations."},
    {"name": "operations", "description": "Liveness, readiness and metrics; admins' health view, "
     "consumers and dead letters."},
]  # fmt: skip
OPENAPI_DESCRIPTION = (
    "Search, hold, pay, confirm: never the same room-night twice.\n\n"
    "Sign in with `POST /api/v1/auth/login` (the demo's accounts are printed when it starts, e.g. "
    "`guest@staybook.demo`) and send the access token as `Authorization: Bearer <token>` (the Authorize "
    "button). Every error is `application/problem+json` (RFC 9457); its `type` URIs are listed in "
    "docs/problems.md. Money is integer minor units with a currency; stays are [check_in, check_out)."
)
SWAGGER_ASSETS = "/docs/assets"

log = structlog.get_logger("staybook.app")


def optional_room(context: str, room: str) -> ModuleType | None:
    name = f"staybook.{context}.{room}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise


def collect_wiring() -> Wiring:
    """Subscriptions and jobs of every context (also used by `staybook worker`)."""
    wiring = Wiring(contexts=list(PUBLISHING_CONTEXTS))
    for context in CONTEXTS:
        bootstrap = optional_room(context, "bootstrap")
        service = optional_room(context, "service")
        wiring.add(
            context, getattr(bootstrap, "SUBSCRIPTIONS", ()), getattr(optional_room(context, "jobs"), "JOBS", ())
        )
        export = getattr(service, "export_personal_data", None)
        if export is not None:
            wiring.personal_data_exports[context] = export
        reseal = getattr(service, "reseal_personal_data", None)
        if reseal is not None:
            wiring.personal_data_reseals[context] = reseal
    return wiring


@contextlib.asynccontextmanager
async def context_lifespans(runtime: Runtime) -> AsyncIterator[None]:
    """Enters each context's `bootstrap.lifespan(runtime)` in CONTEXTS order (exits in reverse),
    binds what it yields into the context's subscriptions and jobs, keeps it for its routes, and
    starts the context's replica subscriptions."""
    async with contextlib.AsyncExitStack() as stack:
        for context in CONTEXTS:
            lifespan = getattr(optional_room(context, "bootstrap"), "lifespan", None)
            if lifespan is not None:
                deps = await stack.enter_async_context(lifespan(runtime))
                runtime.context_deps[context] = deps
                runtime.wiring.bind(context, deps)
            await runtime.consumers.start([s for s in runtime.wiring.replica_subscriptions if s.context == context])
        yield


def configure_observability(settings: Settings):
    configure_logging(settings.service_name, settings.pod, settings.log_level, settings.log_json)
    return configure_tracing(
        settings.service_name, settings.otlp_endpoint, settings.trace_sample_ratio, settings.trace_client_calls
    )


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the vendored swagger-ui-dist (scripts/vendor-assets): works offline."""
    from importlib import resources

    assets = resources.files("staybook.kernel") / "static" / "swagger-ui"
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(assets)), name="swagger-ui")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="staybook API",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)


def create_app(
    settings: Settings | None = None,
    *,
    payment_provider: object = None,
    mailer: object = None,
    saga_checkpoint: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The ASGI app. `payment_provider` and `mailer` replace the adapters settings choose (tests);
    `saga_checkpoint` is called at each point of the payment saga between a provider call and its
    transaction (the crash tests kill the process there); `clock` is the time decisions are taken
    at (`Runtime.now`), for tests that move time instead of waiting."""
    settings = settings or Settings()
    adapters = Adapters(payment_provider=payment_provider, mailer=mailer, saga_checkpoint=saga_checkpoint, clock=clock)
    tracer = configure_observability(settings)
    wiring = collect_wiring()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, wiring, adapters)
        app.state.runtime = runtime
        await runtime.start()
        worker = Worker(runtime) if settings.run_worker_in_process else None
        try:
            async with context_lifespans(runtime):
                if worker is not None:
                    await worker.start()
                log.info(
                    "staybook api started",
                    context={
                        "database": runtime.db.dialect,
                        "bus": runtime.bus.kind,
                        "cache": runtime.cache.kind,
                        "worker_in_process": worker is not None,
                    },
                )
                try:
                    yield
                finally:
                    # Stop every handler before the contexts release what the handlers use.
                    if worker is not None:
                        await worker.stop()
                    await runtime.bus.close()
        finally:
            await runtime.close()
            shutdown_tracing()

    app = FastAPI(
        title="staybook",
        version="0.1.0",
        summary="Accommodation booking: search, hold, pay, confirm.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.settings = settings
    openapi.install(app, tags=OPENAPI_TAGS, description=OPENAPI_DESCRIPTION)
    _mount_docs(app)
    install_error_handlers(app)
    app.include_router(operations_api.router)
    app.include_router(operations_api.admin_router, prefix=API_PREFIX)
    for context in CONTEXTS:
        api = optional_room(context, "api")
        router = getattr(api, "router", None)
        if router is not None:
            app.include_router(router, prefix="" if context == "web" else API_PREFIX)

    # Added innermost first: contexts' own middleware (answers served before routing, such as
    # search's cached answers) sits inside the kernel's; context (ids, metrics) sees every response,
    # including 413s and 429s; CORS wraps the gateway so browsers can read its 429s; the gateway
    # rate-limits before any body is read.
    for context in CONTEXTS:
        for middleware in getattr(optional_room(context, "api"), "MIDDLEWARE", ()):
            app.add_middleware(middleware, prefix="" if context == "web" else API_PREFIX)
    app.add_middleware(
        BodySizeLimitMiddleware,
        default_limit=settings.gateway.max_body_bytes,
        overrides=settings.gateway.large_body_routes,
    )
    app.add_middleware(GatewayMiddleware, settings=settings.gateway)
    if settings.gateway.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.gateway.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "traceparent"],
            expose_headers=["X-Request-ID", "traceparent", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, tracer=tracer)
    return app
