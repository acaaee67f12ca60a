"""Bearer-token authentication with roles.

Tokens come from the config (``api.tokens``): each has a name, a role, and either the environment
variable that holds it or the hex SHA-256 of it. Only hashes are kept in memory; comparison is
constant-time; tokens are never logged.

Roles are ordered: ``reader`` < ``operator`` < ``rule-author`` < ``admin``. A role may do what the
roles below it may do.

>>> import hashlib
>>> auth = TokenAuth([("ci", "operator", hashlib.sha256(b"s3cret-token").hexdigest())])
>>> auth.check("s3cret-token", "reader").name
'ci'
>>> auth.check("s3cret-token", "admin")
Traceback (most recent call last):
...
opsradar.serving.auth.Forbidden: token 'ci' has role operator; this needs admin
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

from opsradar.config import ApiConfig

__all__ = ["ROLES", "Forbidden", "Principal", "TokenAuth", "Unauthorized"]

ROLES = ("reader", "operator", "rule-author", "admin")


class Unauthorized(Exception):
    """No token, or an unknown one (HTTP 401)."""


class Forbidden(Exception):
    """A valid token whose role is too low (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuth:
    """Checks bearer tokens against configured hashes."""

    def __init__(self, tokens: Sequence[tuple[str, str, str]]) -> None:
        """``tokens``: (name, role, sha256 hex) triples."""
        for _, role, _ in tokens:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}")
        self._tokens = [(name, role, digest.lower()) for name, role, digest in tokens]

    @classmethod
    def from_config(cls, api: ApiConfig) -> TokenAuth:
        triples = []
        for tok in api.tokens:
            if tok.sha256:
                triples.append((tok.name, tok.role, tok.sha256))
            elif tok.env and os.environ.get(tok.env):
                triples.append((tok.name, tok.role, _digest(os.environ[tok.env])))
        return cls(triples)

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token")
        digest = _digest(token)
        found = None
        for name, role, expected in self._tokens:
            if hmac.compare_digest(digest, expected):
                found = Principal(name, role)
        if found is None:
            raise Unauthorized("invalid token")
        return found

    def check(self, token: str | None, role: str) -> Principal:
        """The principal of ``token`` if its role allows ``role``; else Unauthorized / Forbidden."""
        principal = self.authenticate(token)
        if not principal.may(role):
            raise Forbidden(f"token {principal.name!r} has role {principal.role}; this needs {role}")
        return principal
