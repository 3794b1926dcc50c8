"""Access tokens and the principal every authenticated route sees.

`identity` issues tokens (it owns users and credentials); every context
verifies them here, without a database round trip. Tokens are HS256 JWTs
with the key id in the header: a new key can be made active while the old
ones still verify until their tokens expire.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
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


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str
    token_id: str | None = None

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
            principal = Principal(uuid.UUID(claims["sub"]), claims["role"], claims.get("jti"))
        except (ValueError, KeyError) as error:
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


def bearer_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def _principal(request: Request) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    principal = request.app.state.runtime.tokens.verify(token)
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    return principal


async def optional_principal(request: Request) -> Principal | None:
    return _principal(request)


async def current_principal(request: Request) -> Principal:
    # One dependency level, not a chain of them: FastAPI resolves each level per request.
    principal = _principal(request)
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
