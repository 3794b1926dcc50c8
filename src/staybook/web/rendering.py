"""Turning a page's data into HTML: Jinja2 environments per locale, the route class every page
goes through (session, CSRF, errors as pages), compression and the pages' own headers."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Coroutine, Iterator
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from staybook.kernel.errors import StaybookError, Unauthorized
from staybook.kernel.runtime import Runtime
from staybook.web import i18n
from staybook.web.session import WebSession, load_session, secure_cookies

log = structlog.get_logger("staybook.web")

# Pages smaller than a TCP segment gain nothing from compression.
COMPRESS_FROM_BYTES = 1400
STATIC_VERSION = "2"


class TranslatedWhenCompiled(Extension):
    """`_("text")` with a literal and nothing else becomes the translated text, marked safe, when
    the template is compiled: an environment is one locale's, so the answer never changes, and a
    page no longer makes a call per label on every view. The text is what the newstyle `_()`
    gives (translated, safe, %-formatted with no variables); anything else stays a call."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        translate = self.environment.compile_translations.gettext  # type: ignore[attr-defined]
        pending: list[Token] = []  # tokens that may be the start of `_("text")`
        before: Token | None = None  # the token before them
        for token in stream:
            pending.append(token)
            if _starts_literal_call(pending, before):
                if len(pending) == len(_LITERAL_CALL):
                    yield from _translated(pending, translate)
                    before, pending = pending[-1], []
                continue
            # Not one: only the last token can start another (the shape begins with `_`).
            *passed, last = pending
            yield from passed
            before = passed[-1] if passed else before
            pending = [last]
            if not _starts_literal_call(pending, before):
                yield last
                before, pending = last, []
        yield from pending


_LITERAL_CALL = (("name", "_"), ("lparen", None), ("string", None), ("rparen", None))


def _starts_literal_call(tokens: list[Token], before: Token | None) -> bool:
    """Whether `tokens` begin `_ ( "text" )`, `_` not an attribute (`x._`)."""
    if len(tokens) > len(_LITERAL_CALL) or (before is not None and before.type == "dot"):
        return False
    return all(
        token.type == kind and (value is None or token.value == value)
        for token, (kind, value) in zip(tokens, _LITERAL_CALL, strict=False)
    )


def _translated(call: list[Token], translate: Callable[[str], str]) -> list[Token]:
    name, _, text, _ = call
    translated = translate(text.value)
    if "%" in translated:
        try:
            translated = translated % {}  # as the newstyle `_()` formats a message without variables
        except (KeyError, ValueError, TypeError):
            return call  # left to the call, which fails (or formats) as it always did
    return [Token(name.lineno, "string", translated), Token(name.lineno, "pipe", "|"),
            Token(name.lineno, "name", "safe")]  # fmt: skip


@cache
def environment(locale: str) -> Environment:
    env = Environment(
        loader=PackageLoader("staybook.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n", TranslatedWhenCompiled],
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates are package files: no stat of every template and include per page.
        auto_reload=False,
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)
    env.extend(compile_translations=i18n.translations(locale))  # before any template is compiled
    env.globals["gettext"] = env.globals["_"] = _remembered(env.globals["gettext"])
    env.globals.update(
        money=lambda value: i18n.money(*_money_parts(value), locale),
        money_of=lambda amount, currency: i18n.money(amount, currency, locale),
        money_plain=lambda value: i18n.plain_amount(*_money_parts(value)),
        day=lambda value, style="medium": i18n.day(value, locale, style),
        moment=lambda value: i18n.moment(value, locale),
        variant=_variant,
        locale=locale,
        languages=i18n.LANGUAGE_NAMES,
        static_version=STATIC_VERSION,
    )
    env.filters["label"] = lambda value: str(value).replace("_", " ")
    # An amenity's or property type's label in the page's language ("tv" -> "TV", "Fernseher").
    labels = i18n.code_labels(locale)
    env.filters["code_label"] = lambda code: labels.get(code) or env.filters["tr"](i18n.code_label(code))
    # Messages that come as values (notices, error details) are translated without %-formatting,
    # which `_()` applies and which a detail containing '%' would break.
    env.filters["tr"] = i18n.translations(locale).gettext
    return env


# Distinct messages `_()` is called with and nothing else (a page has a few dozen; a bound all the same).
REMEMBERED_MESSAGES = 4096


def _remembered(gettext: Callable[..., str]) -> Callable[..., str]:
    """Jinja's gettext, remembering the answer for a message without variables: a page calls
    `_()` with the same few dozen texts on every view, and each call translates, marks safe and
    %-formats (a `%%` becomes `%` there too, so the remembered text is the one it gave)."""
    answers: dict[tuple[str, bool], str] = {}

    @pass_context
    def remembered(context: Context, message: str, **variables: Any) -> str:
        if variables:
            return gettext(context, message, **variables)
        key = (message, context.eval_ctx.autoescape)
        found = answers.get(key)
        if found is None:
            found = gettext(context, message)
            if len(answers) < REMEMBERED_MESSAGES:
                answers[key] = found
        return found

    return remembered


def _variant(photo: Any, name: str) -> Any:
    """The photo's variant called `name` (thumb, thumb_webp, large_webp), or None while it is made."""
    return next((v for v in photo.variants if v.name == name), None)


def _money_parts(value: Any) -> tuple[int, str]:
    """(amount, currency) of a money document or model (services give either)."""
    if isinstance(value, dict):
        return value["amount"], value["currency"]
    return value.amount, value.currency


def page_state(request: Request) -> tuple[Runtime, WebSession, str]:
    state = request.state
    return state.runtime, state.web, state.locale


def render(request: Request, template: str, status: int = 200, headers: dict | None = None, **context: Any) -> Response:
    runtime, session, locale = page_state(request)
    settings = runtime.settings.web
    html = (
        environment(locale)
        .get_template(template)
        .render(
            request=request,
            session=session,
            role=session.principal.role if session.principal else None,
            csrf=session.csrf,
            path=_path(request),
            full_path=_full_path(request),
            web=settings,
            environment_name=runtime.settings.environment,
            **context,
        )
    )
    response = html_response(request, html.encode(), status)
    if headers:
        response.headers.update(headers)
    if settings.tile_url:
        response.headers["content-security-policy"] = _csp_with_tiles(
            runtime.settings.gateway.content_security_policy, settings.tile_url
        )
    return response


def html_response(request: Request, body: bytes, status: int = 200) -> Response:
    headers = {"vary": "Accept-Encoding", "cache-control": "private, no-cache"}
    if len(body) >= COMPRESS_FROM_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=5)
        headers["content-encoding"] = "gzip"
    return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=headers)


def _csp_with_tiles(policy: str, tile_url: str) -> str:
    parts = urlsplit(tile_url.replace("{s}", "a"))
    origin = f"{parts.scheme}://{parts.netloc}"
    if "{s}" in tile_url:
        origin = f"{parts.scheme}://*.{parts.netloc.split('.', 1)[-1]}"
    return policy.replace("img-src 'self' data:", f"img-src 'self' data: {origin}")


def _path(request: Request) -> str:
    # request.url.path, from the scope without building the URL (every page shows it).
    return request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


def _full_path(request: Request) -> str:
    query = request.scope.get("query_string", b"").decode()
    return _path(request) + (f"?{query}" if query else "")


def redirect(to: str, status: int = 303) -> Response:
    return RedirectResponse(to, status_code=status)


def login_redirect(request: Request) -> Response:
    target = _full_path(request) if request.method == "GET" else request.headers.get("referer", "/")
    parts = urlsplit(target)
    local = parts.path + (f"?{parts.query}" if parts.query else "")
    return redirect(f"/login?next={quote(local)}")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, error: StaybookError) -> Response:
    """An API error as a page (or, for htmx, a message fragment put where messages go)."""
    errors = error.extensions.get("errors") or []
    context = {"title": error.title, "detail": error.detail, "errors": errors}
    if is_htmx(request):
        return render(
            request,
            "_messages.html",
            headers={"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"},
            message=error.detail,
            level="error",
            errors=errors,
        )
    return render(request, "error.html", status=error.status, **context)


class WebRoute(APIRoute):
    """Every page: the session (and CSRF) before the handler, API errors as clear pages after it,
    the session's cookie changes on the response. An unexpected error is logged with its stack
    and shown as a page with the request id, never as a trace or problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            return await serve_page(request, handler)

        return page


async def serve_page(request: Request, handler: Callable[[Request], Coroutine[Any, Any, Response]]) -> Response:
    """A page as every route of `WebRoute` serves it (and the pages served before routing)."""
    runtime: Runtime = request.app.state.runtime
    request.state.runtime = runtime
    request.state.locale = i18n.pick_locale(
        request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language")
    )
    request.state.web = WebSession(principal=None, csrf_seed="", csrf="")
    try:
        request.state.web = await load_session(request, runtime)
        response = await handler(request)
    except Unauthorized:
        request.state.web.sign_out()
        response = login_redirect(request)
    except StaybookError as error:
        response = error_page(request, error)
    except RequestValidationError as error:
        response = error_page(request, _validation_error(error))
    except Exception:
        log.exception("web page failed", error_type="unhandled")
        response = render(
            request,
            "error.html",
            status=500,
            title="Something went wrong",
            detail="Something went wrong on our side. Please try again in a moment.",
            errors=[],
            reference=request.scope.get("state", {}).get("request_id"),
        )
    request.state.web.apply(response, secure_cookies(runtime))
    return response


def _validation_error(error: RequestValidationError) -> StaybookError:
    from staybook.kernel.errors import InvalidInput

    errors = [
        {"field": ".".join(str(part) for part in e.get("loc", ())), "message": e.get("msg", "invalid")}
        for e in error.errors()
    ]
    return InvalidInput("Some fields are not valid.", errors=errors)
