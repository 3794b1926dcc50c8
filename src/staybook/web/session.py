"""Browser sessions and CSRF tokens of the web pages.

The browser holds the identity context's own tokens, in HttpOnly, SameSite=Lax cookies (Secure
except on the plain-http demo): the access token (`sb_session`) and the refresh token
(`sb_refresh`). An expired access token is renewed with the refresh token, which identity rotates
(a stolen refresh token shown twice revokes its family), so a page is signed in exactly as long
as the API's tokens say. The JSON API keeps its bearer tokens and never reads these cookies.

CSRF: every browser gets a random `sb_csrf` cookie; each form carries the HMAC of that value
under the site's secret key, and a POST without the matching token is refused before any work.
A cross-site page can make the browser send the cookie but can neither read it nor compute the
token. htmx requests send the token in the `X-CSRF-Token` header (from the page's meta tag).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from staybook.identity import service as identity
from staybook.kernel.errors import Forbidden, StaybookError, Unauthorized
from staybook.kernel.gateway import client_ip
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal

SESSION_COOKIE = "sb_session"
REFRESH_COOKIE = "sb_refresh"
MFA_COOKIE = "sb_mfa"
CSRF_COOKIE = "sb_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Forbidden):
    code, title = "csrf-refused", "Form refused"


def csrf_token(secret: bytes, seed: str) -> str:
    """The form token of a browser's CSRF seed: HMAC-SHA256 under the site's secret key."""
    digest = hmac.new(secret, b"csrf:" + seed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(secret: bytes, seed: str | None, token: str | None) -> bool:
    if not seed or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, seed), token)


def new_csrf_seed() -> str:
    return secrets.token_urlsafe(32)


def secure_cookies(runtime: Runtime) -> bool:
    configured = runtime.settings.web.secure_cookies
    return configured if configured is not None else runtime.settings.environment != "demo"


@dataclass
class WebSession:
    """What a page knows of its visitor, and the cookies the response must set or clear."""

    principal: Principal | None
    csrf_seed: str
    csrf: str
    cookies: dict[str, tuple[str, int] | None] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return self.principal is not None

    def sign_in(self, runtime: Runtime, tokens: dict) -> None:
        """Keeps identity's token pair in the cookies and signs this response in."""
        self.principal = runtime.tokens.verify(tokens["access_token"])
        self.cookies[SESSION_COOKIE] = (tokens["access_token"], runtime.settings.identity.refresh_token_ttl_seconds)
        self.cookies[REFRESH_COOKIE] = (tokens["refresh_token"], runtime.settings.identity.refresh_token_ttl_seconds)
        self.cookies[MFA_COOKIE] = None

    def sign_out(self) -> None:
        self.principal = None
        for name in (SESSION_COOKIE, REFRESH_COOKIE, MFA_COOKIE):
            self.cookies[name] = None

    def apply(self, response: Response, secure: bool) -> None:
        for name, value in self.cookies.items():
            if value is None:
                response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")
            else:
                response.set_cookie(
                    name, value[0], max_age=value[1], path="/", secure=secure, httponly=True, samesite="lax"
                )


def request_info(request: Request) -> identity.RequestInfo:
    agent = request.headers.get("user-agent")
    return identity.RequestInfo(ip=client_ip(request), user_agent=agent[:300] if agent else None)


async def load_session(request: Request, runtime: Runtime) -> WebSession:
    """The visitor's session: verified access token, renewed once through the refresh token when
    it has expired; CSRF checked on every unsafe method (before the route does anything)."""
    secret = runtime.settings.secret_key.get_secret_value().encode()
    seed = request.cookies.get(CSRF_COOKIE)
    fresh_seed = seed is None or len(seed) > 100
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and _is_form(request):
            sent = (await request.form()).get(CSRF_FIELD)
        if fresh_seed or not csrf_matches(secret, seed, sent if isinstance(sent, str) else None):
            raise CsrfRefused("This form was not sent from this site's page, or it is too old. Reload and try again.")
    if fresh_seed:
        seed = new_csrf_seed()
    session = WebSession(principal=None, csrf_seed=seed, csrf=csrf_token(secret, seed))
    if fresh_seed:
        session.cookies[CSRF_COOKIE] = (seed, 365 * 86_400)
    access = request.cookies.get(SESSION_COOKIE)
    if access:
        try:
            # The same check as the API's: a revoked token (sign out everywhere, a role change) ends here too.
            session.principal = await runtime.token_versions.check(runtime.tokens.verify(access))
            return session
        except Unauthorized:
            pass
    refresh = request.cookies.get(REFRESH_COOKIE)
    if refresh:
        try:
            session.sign_in(runtime, await identity.refresh(runtime, refresh[:512], request_info(request)))
        except StaybookError:
            session.sign_out()
    return session


def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
