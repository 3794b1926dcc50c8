"""The seam for social sign-in (OpenID Connect): what a provider must do, and nothing built on it yet.

A provider (Google, Apple, Microsoft, any OIDC issuer) is one class satisfying
`OidcProvider`. The flow it serves is the authorization-code flow with PKCE:

1. `authorization_url(state, nonce, code_verifier, redirect_uri)` gives the URL the
   browser is sent to; staybook keeps `state`, `nonce` and the PKCE verifier
   server-side (e.g. in Redis, a few minutes) keyed by `state`.
2. The provider redirects back with `code` and `state`; staybook checks `state`,
   then `exchange(code, code_verifier, redirect_uri)` swaps the code for tokens and
   returns the verified identity (`OidcIdentity`): the provider must verify the ID
   token's signature against its JWKS, `iss`, `aud`, `exp` and the `nonce`.
3. identity links `(provider, subject)` to a user: an existing link signs in; an
   unlinked but *verified* email of an existing account links only after that
   user signs in with their password (no account takeover through a provider
   that lets people claim any email); otherwise a new account without a
   password is created. Then sessions work as for password sign-in (refresh
   families, MFA when the account has it on, audit entries `auth.login` with
   `method: "oidc:<provider>"`).

Step 3 needs a `user_identities (provider, subject, user_id)` table; it arrives
with the first provider, so no unused table ships now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider says signed in; only fields the provider verified."""

    provider: str
    subject: str  # the provider's stable user id (`sub`), never the email
    email: str | None
    email_verified: bool
    name: str | None = None
    locale: str | None = None


@runtime_checkable
class OidcProvider(Protocol):
    name: str  # "google", "apple", ...; part of the callback route and the audit entries

    def authorization_url(self, *, state: str, nonce: str, code_verifier: str, redirect_uri: str) -> str:
        """The provider's authorize URL with client id, scopes (`openid email profile`), PKCE challenge."""

    async def exchange(self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> OidcIdentity:
        """Redeems the code, verifies the ID token (JWKS signature, iss, aud, exp, nonce); raises on any doubt."""
