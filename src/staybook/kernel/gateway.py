"""The gateway: what every HTTP request passes before a route sees it (pure ASGI, no BaseHTTPMiddleware).

- The client IP: the peer address, or the right-most untrusted address of
  `X-Forwarded-For` when the peer is one of `settings.gateway.trusted_proxies`
  (addresses or CIDR ranges). Stored in `scope["state"]["client_ip"]`; read it
  with `client_ip(request)`. This is the only place forwarding headers are read
  (`X-Forwarded-Proto` too): uvicorn's own proxy-header handling is off in every
  mode (`kernel.serving`), because it trusts 127.0.0.1 by default, and any local
  client could then name itself a new address for each request.
- A NUL character in the path or the query string is refused (400): no name, token
  or cursor contains one, and PostgreSQL cannot store one in text.
- The platform rate limit per client IP (default 2,000 requests per 5 minutes,
  then a 10-minute block) on the runtime's limiter (Redis when configured, so
  every API process shares one count); 429 problem+json with `Retry-After`.
- Security headers on every response: HSTS, nosniff, frame denial, referrer
  policy and a strict Content-Security-Policy (relaxed only for the API docs page,
  which loads Swagger UI from a CDN).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
import structlog

from staybook.kernel import metrics
from staybook.kernel.errors import problem_body
from staybook.kernel.http import ASGIApp, Message, Receive, Scope, Send, header, send_problem
from staybook.kernel.ratelimit import RateLimitRule
from staybook.kernel.settings import GatewaySettings

log = structlog.get_logger("staybook.gateway")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Swagger UI (FastAPI's /docs) loads its script and styles from jsDelivr and runs one inline script.
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "style-src 'self' https://cdn.jsdelivr.net; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "object-src 'none'; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")


def parse_networks(entries: list[str]) -> list[IPNetwork]:
    """'10.0.0.1' or '10.0.0.0/8' -> networks; an unparseable entry is a configuration error."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def _is_trusted(address: str, networks: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def resolve_client_ip(peer: str | None, forwarded_for: str | None, trusted: list[IPNetwork]) -> str:
    """The address of the client as far as trusted proxies vouch for it.

    X-Forwarded-For is appended to by each proxy, so it is read from the right:
    the first address not belonging to a trusted proxy is the client. A header
    sent by an untrusted peer is ignored (anyone can write it).
    """
    peer = peer or "unknown"
    if not forwarded_for or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def client_ip(request: Any) -> str:
    """The client IP the gateway resolved (falls back to the peer when the gateway is not installed)."""
    resolved = request.scope.get("state", {}).get("client_ip")
    if resolved:
        return resolved
    client = request.scope.get("client")
    return client[0] if client else "unknown"


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings
        self.trusted = parse_networks(settings.trusted_proxies)
        self.exempt = frozenset(settings.rate_limit_exempt_paths)
        self.rule = RateLimitRule(
            "gateway.ip",
            settings.rate_limit_requests,
            settings.rate_limit_window_seconds,
            settings.rate_limit_block_seconds,
        )
        hsts = f"max-age={settings.hsts_seconds}; includeSubDomains" if settings.hsts_seconds else None
        base = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            base.append((b"strict-transport-security", hsts.encode()))
        self.security_headers = base if settings.security_headers else []
        self.csp = settings.content_security_policy.encode() if settings.security_headers else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        peer_address = peer[0] if peer else None
        ip = resolve_client_ip(peer_address, header(scope, b"x-forwarded-for"), self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        if self.trusted and peer_address and _is_trusted(peer_address, self.trusted):
            proto = header(scope, b"x-forwarded-proto")
            if proto in ("http", "https"):
                scope["scheme"] = proto  # absolute URLs (calendar feed links) name what the client used
        extra = self._headers_for(scope["path"])
        send = self._with_headers(send, extra) if extra else send
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await send_problem(send, scope, 400, "bad-request", "Bad request", "NUL characters are not accepted")
            return

        if scope["path"] not in self.exempt:
            retry_after = await self._check_rate(scope, ip)
            if retry_after:
                await _send_rate_limited(send, scope["path"], retry_after)
                return
        await self.app(scope, receive, send)

    async def _check_rate(self, scope: Scope, ip: str) -> int:
        app = scope.get("app")
        runtime = getattr(getattr(app, "state", None), "runtime", None)
        if runtime is None:
            return 0
        try:
            decision = await runtime.rate_limiter.hit(self.rule, ip)
        except Exception as error:
            # Failing open: an unreachable Redis must not take the whole API down with it.
            log.warning("rate limiter unavailable; request allowed", error_type=type(error).__name__)
            return 0
        if decision.allowed:
            return 0
        metrics.RATE_LIMITED.labels(self.rule.name).inc()
        return max(1, decision.retry_after_seconds)

    def _headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        if not self.security_headers:
            return []
        csp = _DOCS_CSP.encode() if path in _DOCS_PATHS else self.csp
        return [*self.security_headers, (b"content-security-policy", csp)] if csp else list(self.security_headers)

    @staticmethod
    def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        return send_with_headers


async def _send_rate_limited(send: Send, path: str, retry_after: int) -> None:
    body = orjson.dumps(
        problem_body(
            429,
            "rate-limited",
            "Too many requests",
            f"Rate limit exceeded; retry after {retry_after} s",
            path,
            retry_after=retry_after,
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
