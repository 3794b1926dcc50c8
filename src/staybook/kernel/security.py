"""Access tokens and the principal every authenticated route sees.

`identity` issues tokens (it owns users and credentials); every context
verifies them here, without a database round trip. Tokens are HS256 JWTs
with the key id in the header: a new key can be made active while the old
ones still verify until their tokens expire.

A token also carries its user's token version (claim `ver`). Revoking a
user's rights (a role change, erasure, a password change, signing out
everywhere) raises the version, and every access token with a lower one is
refused from the next request on: `TokenVersions` keeps the current versions
in Redis (in memory without it), in front of it a short in-process cache that
the revoking process updates at once and the others on identity's event.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
import structlog
from fastapi import Request

from staybook.kernel.errors import Forbidden, Unauthorized
from staybook.kernel.settings import Settings

Role = Literal["guest", "host", "admin"]
ROLES: tuple[str, ...] = ("guest", "host", "admin")
ALGORITHM = "HS256"
# Verified access tokens remembered per process (about 1 KB each).
VERIFIED_TOKENS_KEPT = 50_000
# Users whose token version a process remembers (about 200 bytes each).
TOKEN_VERSIONS_KEPT = 100_000

log = structlog.get_logger("staybook.security")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str
    token_id: str | None = None
    # The user's token version when the token was issued (0 for tokens issued before versions existed).
    token_version: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class TokenSigner:
    def __init__(self, settings: Settings) -> None:
        self.keys = {kid: secret.get_secret_value().encode() for kid, secret in settings.jwt_keys.items()}
        self.active_kid = settings.jwt_active_key_id
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.ttl = timedelta(seconds=settings.identity.access_token_ttl_seconds)
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def issue(self, user_id: uuid.UUID, role: str, *, extra: dict | None = None, ttl: timedelta | None = None) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "role": role,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + (ttl or self.ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
            "typ": "access",
            **(extra or {}),
        }
        return jwt.encode(claims, self.keys[self.active_kid], algorithm=ALGORITHM, headers={"kid": self.active_kid})

    def verify(self, token: str) -> Principal:
        """The principal of a valid access token; 401 otherwise.

        Verifying a JWT costs about 0.2 ms of CPU; clients send the same token for its whole
        life, so verified tokens are remembered until they expire. A token's content cannot
        change, and the keyring is fixed for the life of the process, so the answer cannot either.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at:
                return principal
            del self._verified[token]
        claims = self.decode(token, "access")
        if claims.get("role") not in ROLES:
            raise Unauthorized("Invalid access token")
        try:
            principal = Principal(
                uuid.UUID(claims["sub"]), claims["role"], claims.get("jti"), int(claims.get("ver", 0))
            )
        except (ValueError, KeyError, TypeError) as error:
            raise Unauthorized("Invalid access token") from error
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    def decode(self, token: str, token_type: str) -> dict:
        """Verified claims of a token of `token_type` ("access", or e.g. identity's "mfa"); 401 otherwise.

        A token of one type never passes as another, so a half-finished MFA sign-in
        cannot be used as an access token.
        """
        label = "access token" if token_type == "access" else f"{token_type} token"
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.get(header.get("kid", ""))
            if key is None or header.get("alg") != ALGORITHM:
                raise Unauthorized(f"Invalid {label}")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthorized(f"{label.capitalize()} expired") from error
        except (jwt.InvalidTokenError, ValueError, KeyError) as error:
            raise Unauthorized(f"Invalid {label}") from error
        if claims.get("typ") != token_type:
            raise Unauthorized(f"Invalid {label}")
        return claims


VersionLoader = Callable[[uuid.UUID], Awaitable[int]]

# Raises the stored version only: a late writer (an older revocation, a reader filling a gap) never
# lowers it.
_RAISE_VERSION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end
return current
"""


class TokenVersions:
    """Each user's current token version, as every API process must see it.

    The truth is identity's `users.token_version`; `loader` (injected by identity) reads it
    when neither the in-process cache nor Redis knows a user. With Redis, versions are
    shared by all processes; a short in-process cache in front of it saves the round trip,
    and is updated by the revoking process at once and by the others when identity's event
    arrives (`remember`), so a revocation holds on the next request.
    """

    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self.loader: VersionLoader | None = None
        self._redis = None
        self._prefix = ""
        self._raise = None
        self._cached: OrderedDict[uuid.UUID, tuple[int, float]] = OrderedDict()

    def use_redis(self, redis, prefix: str) -> None:
        self._redis, self._prefix = redis, prefix
        self._raise = redis.register_script(_RAISE_VERSION)

    async def current(self, user_id: uuid.UUID) -> int:
        cached = self._cached.get(user_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        version = await self._shared(user_id)
        self._keep(user_id, version, now)
        return version

    async def _shared(self, user_id: uuid.UUID) -> int:
        if self._redis is not None:
            try:
                stored = await self._redis.get(self._prefix + str(user_id))
                if stored is not None:
                    return int(stored)
                version = await self._load(user_id)
                return int(await self._raise(keys=[self._prefix + str(user_id)], args=[version]))
            except Exception as error:  # redis-py raises its own ConnectionError/TimeoutError
                # The database still knows: slower, never wrong.
                log.warning("Redis unreachable; token version read from the database", error_type=type(error).__name__)
        return await self._load(user_id)

    async def _load(self, user_id: uuid.UUID) -> int:
        if self.loader is None:
            cached = self._cached.get(user_id)
            return cached[0] if cached is not None else 0
        return await self.loader(user_id)

    async def raised(self, user_id: uuid.UUID, version: int) -> None:
        """Records a revocation (after its commit) for this process and, through Redis, for all of them."""
        self.remember(user_id, version)
        if self._redis is not None:
            try:
                await self._raise(keys=[self._prefix + str(user_id)], args=[version])
            except Exception as error:  # redis-py raises its own ConnectionError/TimeoutError
                log.warning("token version not written to Redis", error_type=type(error).__name__)

    def remember(self, user_id: uuid.UUID, version: int) -> None:
        """This process's cache learns a version (from the revoking call or identity's event); never lowers it."""
        cached = self._cached.get(user_id)
        if cached is None or version >= cached[0]:
            self._keep(user_id, version, time.monotonic())

    def _keep(self, user_id: uuid.UUID, version: int, now: float) -> None:
        if len(self._cached) >= TOKEN_VERSIONS_KEPT:
            self._cached.popitem(last=False)
        self._cached[user_id] = (version, now + self.cache_seconds)
        self._cached.move_to_end(user_id)

    async def check(self, principal: Principal) -> Principal:
        """The principal, or 401 when its token was issued before the user's rights were revoked."""
        if principal.token_version < await self.current(principal.user_id):
            raise Unauthorized("This access token was revoked; sign in again")
        return principal


def bearer_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def _principal(request: Request) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    runtime = request.app.state.runtime
    principal = await runtime.token_versions.check(runtime.tokens.verify(token))
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    return principal


async def optional_principal(request: Request) -> Principal | None:
    return await _principal(request)


async def current_principal(request: Request) -> Principal:
    # One dependency level, not a chain of them: FastAPI resolves each level per request.
    principal = await _principal(request)
    if principal is None:
        raise Unauthorized("This route needs a bearer access token")
    return principal


def require_role(*roles: str):
    """Dependency factory: `Depends(require_role("host", "admin"))` returns the principal or 403.

    Dependencies here are `async def`: FastAPI runs plain `def` dependencies in a thread pool,
    a thread hand-off per dependency per request that showed up as the top cost in profiles.
    """

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal.role not in roles:
            raise Forbidden(f"This action needs one of the roles: {', '.join(roles)}")
        return principal

    return dependency
