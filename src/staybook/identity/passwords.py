"""Password rules and argon2id hashing (pure: no I/O beyond reading the shipped word list once)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD_LENGTH = 128


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of passwords too common to accept (lower-cased)."""
    text = resources.files("staybook.identity").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class PasswordProblem:
    code: str
    message: str


def password_problems(password: str, *, min_length: int, email: str | None = None, name: str | None = None):
    """Every rule the password breaks, as (code, message); empty when it is acceptable."""
    normalised = unicodedata.normalize("NFKC", password)
    problems: list[PasswordProblem] = []
    if len(normalised) < min_length:
        problems.append(PasswordProblem("too-short", f"Password must be at least {min_length} characters long"))
    if len(normalised) > MAX_PASSWORD_LENGTH:
        problems.append(PasswordProblem("too-long", f"Password must be at most {MAX_PASSWORD_LENGTH} characters long"))
    lowered = normalised.lower()
    if lowered in common_passwords():
        problems.append(PasswordProblem("too-common", "Password is on the list of commonly used passwords"))
    elif len(set(lowered)) <= 2:
        problems.append(PasswordProblem("too-simple", "Password repeats too few different characters"))
    # Compared on letters and digits only: "ana-lima-2024" contains the name "Ana Lima".
    personal = [_alnum(p) for p in ((email or "").split("@")[0], name or "")]
    if any(len(part) >= 4 and part in _alnum(lowered) for part in personal):
        problems.append(PasswordProblem("contains-personal-data", "Password must not contain your email or name"))
    return problems


def _alnum(text: str) -> str:
    return re.sub(r"[\W_]", "", text.lower())


class PasswordHashing:
    """argon2id with the configured cost; knows when a stored hash was made with other parameters."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)
        # Verifying against this when the email is unknown costs what a real check costs,
        # so response time does not tell whether an account exists.
        self.dummy_hash = self.hasher.hash("staybook-no-such-account")

    def hash(self, password: str) -> str:
        return self.hasher.hash(unicodedata.normalize("NFKC", password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash or self.dummy_hash, unicodedata.normalize("NFKC", password)) and (
                stored_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)

    @property
    def parameters(self) -> dict:
        p = self.hasher
        return {"type": "argon2id", "time_cost": p.time_cost, "memory_kib": p.memory_cost, "parallelism": p.parallelism}
