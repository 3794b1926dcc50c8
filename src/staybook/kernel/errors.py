"""One error hierarchy, mapped to RFC 9457 problem+json at the HTTP edge.

Services raise these; they never build HTTP responses. Anything else that
escapes a route is a bug: it is logged with its stack and the client gets a
plain 500 problem without internals.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sqlalchemy_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://staybook.dev/problems/"

log = structlog.get_logger("staybook.errors")


class StaybookError(Exception):
    """Base of every expected failure. `code` becomes the problem type URI."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"
    # A passing state ("still in progress"): an Idempotency-Key must not keep it as its answer.
    transient: bool = False

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(StaybookError):
    """A request that parsed but breaks a rule. `errors` carries field paths."""

    status, code, title = 422, "validation-error", "Invalid input"

    def __init__(self, detail: str, *, field: str | None = None, errors: list[dict] | None = None, **ext):
        if errors is None and field is not None:
            errors = [{"field": field, "message": detail}]
        super().__init__(detail, errors=errors or [], **ext)


class Unauthorized(StaybookError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="staybook"'}


class Forbidden(StaybookError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(StaybookError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(StaybookError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(StaybookError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLarge(StaybookError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(StaybookError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class TooManyRequests(StaybookError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or f"Rate limit exceeded; retry after {retry_after} s", retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(StaybookError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


class UpstreamError(StaybookError):
    """A dependency (payment provider, mail server) failed in a way the client cannot fix."""

    status, code, title = 502, "upstream-error", "Upstream service failed"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
}


def problem_body(status: int, code: str, title: str, detail: str | None, instance: str | None, **ext) -> dict:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in ext.items() if v is not None})
    return body


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **ext: Any,
) -> Response:
    body = problem_body(status, code, title, detail, instance, **ext)
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def error_response(error: StaybookError, instance: str | None = None) -> Response:
    return problem_response(
        error.status,
        error.code,
        error.title,
        error.detail,
        instance=instance,
        headers=error.headers() or None,
        **error.extensions,
    )


def field_path(loc: tuple | list) -> str:
    """('body', 'guest', 'email') -> 'body.guest.email'; list indices become [n]."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def validation_errors(raw_errors: list[dict]) -> list[dict]:
    errors = []
    for err in raw_errors:
        entry = {"field": field_path(err.get("loc", ())), "message": err.get("msg", "invalid"), "type": err.get("type")}
        errors.append(entry)
    return errors


def allowed_methods(request: Request) -> str:
    """Every method some route of this path answers: Starlette's 405 names only the first route's."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


def _is_unstorable_text(error: BaseException | None) -> bool:
    """PostgreSQL refusing text it cannot store (a NUL character, invalid UTF-8) that some field
    without the edge's check let through: the caller's input, not the server, is at fault."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(getattr(error, "__cause__", None), "sqlstate", None)
    return sqlstate in ("22021", "22P05")


def _unstorable_text_response(request: Request) -> Response:
    return problem_response(
        422,
        "validation-error",
        "Invalid input",
        "The request holds text that cannot be stored (a NUL character or invalid UTF-8).",
        instance=request.url.path,
        errors=[{"field": "body", "message": "must not hold NUL characters or invalid UTF-8", "type": "value_error"}],
    )


def unexpected_error_response(exc: BaseException, instance: str | None) -> Response:
    """The 500 problem for a bug that escaped a route; the error is logged with its stack."""
    log.error("unhandled error", error_type=type(exc).__name__, message=str(exc), exc_info=exc)
    return problem_response(
        500,
        "internal-error",
        "Internal server error",
        "An unexpected error occurred; it has been logged.",
        instance=instance,
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_staybook_error(request: Request, exc: StaybookError) -> Response:
        if exc.status >= 500:
            log.warning("request failed", error_type=type(exc).__name__, message=exc.detail)
        return error_response(exc, instance=request.url.path)

    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400,
                "malformed-json",
                "Malformed JSON body",
                "The request body is not valid JSON.",
                instance=request.url.path,
                errors=errors,
            )
        return problem_response(
            422,
            "validation-error",
            "Invalid input",
            "The request has invalid fields.",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        code, title = _HTTP_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        if exc.status_code == 404 and detail in (None, "Not Found"):
            detail = f"No resource at {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(exc.status_code, code, title, detail, instance=request.url.path, headers=headers)

    async def on_database_unavailable(request: Request, exc: Exception) -> Response:
        # Pool exhausted, server refusing connections, failover in progress: the client may retry.
        log.warning("database unavailable", error_type=type(exc).__name__, message=str(exc).splitlines()[0][:300])
        return problem_response(
            503,
            "service-unavailable",
            "Service unavailable",
            "The database is unavailable; retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "2"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_error_response(exc, request.url.path)

    app.add_exception_handler(StaybookError, on_staybook_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)

    async def on_database_error(request: Request, exc: sqlalchemy_exc.DBAPIError) -> Response:
        # A pooled connection the server dropped (restart, failover): the pool discards it, so a retry
        # gets a fresh one. Pools do not pre-ping (three round trips per checkout on asyncpg).
        if exc.connection_invalidated:
            return await on_database_unavailable(request, exc)
        if _is_unstorable_text(exc.orig):
            return _unstorable_text_response(request)
        return await on_unexpected(request, exc)

    async def on_driver_error(request: Request, exc: Exception) -> Response:
        # The hot paths run statements on the driver directly (ADR 0012), unwrapped by SQLAlchemy.
        if _is_unstorable_text(exc):
            return _unstorable_text_response(request)
        return await on_unexpected(request, exc)

    app.add_exception_handler(asyncpg.PostgresError, on_driver_error)

    app.add_exception_handler(sqlalchemy_exc.DBAPIError, on_database_error)
    app.add_exception_handler(sqlalchemy_exc.OperationalError, on_database_unavailable)
    app.add_exception_handler(sqlalchemy_exc.TimeoutError, on_database_unavailable)
    app.add_exception_handler(sqlalchemy_exc.DisconnectionError, on_database_unavailable)
    app.add_exception_handler(ConnectionRefusedError, on_database_unavailable)
    app.add_exception_handler(Exception, on_unexpected)
