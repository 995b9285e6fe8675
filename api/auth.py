"""API tokens: creation, verification and scopes.  The catalog stores only a hash of each secret.

A token is a client id and a secret; requests send
`Authorization: Bearer <client_id>:<client_secret>` (the Coactive tutorial's
`access_token`).  Secrets are 256 random bits, so a single SHA-256 is enough to
make a stolen catalog useless (a slow KDF protects low-entropy passwords, which
these are not) and keeps verification cheap on every request.

Scopes are ordered: `read` < `write` < `admin`.  read runs queries and reads;
write also ingests, classifies and changes concepts; admin also manages tokens.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from warehouse.errors import Forbidden, Invalid, Unauthorized

SCOPES = ("read", "write", "admin")
CLIENT_PREFIX = "pxq_"


class AuthError(Unauthorized):
    """401: missing or wrong credentials."""


class ScopeError(Forbidden):
    """403: valid credentials, insufficient scope."""


@dataclass(frozen=True)
class Principal:
    client_id: str | None
    name: str
    scope: str

    def allows(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


ANONYMOUS_ADMIN = Principal(None, "no-auth", "admin")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared against when the client id is unknown, so an unknown id costs the same
# work as a known one and the answer's timing does not say which ids exist.
_DUMMY_DIGEST = _hash(secrets.token_urlsafe(32))


def create_token(con, name: str, scope: str = "read") -> tuple[str, str]:
    """Insert a token; return (client_id, secret).  The secret is not recoverable later."""
    if scope not in SCOPES:
        raise Invalid(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    if not name or not name.strip():
        raise Invalid("a token needs a name")
    from warehouse import catalog

    client_id = CLIENT_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    con.execute(
        "INSERT INTO catalog.api_tokens (client_id, name, scope, secret_sha256, created_dt) VALUES (?, ?, ?, ?, ?)",
        [client_id, name.strip(), scope, _hash(secret), catalog.now()],
    )
    return client_id, secret


def list_tokens(con) -> list[dict]:
    rows = con.execute(
        "SELECT client_id, name, scope, created_dt, revoked_dt FROM catalog.api_tokens ORDER BY created_dt"
    ).fetchall()
    return [dict(zip(["client_id", "name", "scope", "created_dt", "revoked_dt"], r)) for r in rows]


def revoke_token(con, client_id: str) -> bool:
    from warehouse import catalog

    row = con.execute(
        "UPDATE catalog.api_tokens SET revoked_dt = ? WHERE client_id = ? AND revoked_dt IS NULL RETURNING client_id",
        [catalog.now(), client_id],
    ).fetchone()
    return row is not None


def parse_authorization(header: str | None) -> tuple[str, str]:
    if not header:
        raise AuthError("missing Authorization header; send 'Authorization: Bearer <client_id>:<client_secret>'")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise AuthError("Authorization must be 'Bearer <client_id>:<client_secret>'")
    client_id, sep, secret = credentials.strip().partition(":")
    if not sep or not client_id or not secret:
        raise AuthError("the bearer token must be '<client_id>:<client_secret>'")
    return client_id, secret


class Verifier:
    """Checks bearer tokens against the catalog, with a short cache of good answers.

    The cache keeps the hot path of a polling client off the catalog; it holds
    a verified (client_id, hash) pair for `ttl` seconds, so a revocation takes
    effect within that time.
    """

    def __init__(self, cursor_factory, ttl: float = 5.0):
        self._cursor_factory = cursor_factory
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, header: str | None) -> Principal:
        client_id, secret = parse_authorization(header)
        digest = _hash(secret)
        key = (client_id, digest)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        row = self._cursor_factory().execute(
            "SELECT name, scope, secret_sha256 FROM catalog.api_tokens WHERE client_id = ? AND revoked_dt IS NULL",
            [client_id],
        ).fetchone()
        matches = hmac.compare_digest(row[2] if row is not None else _DUMMY_DIGEST, digest)
        if row is None or not matches:
            raise AuthError("invalid client id or secret")
        principal = Principal(client_id, row[0], row[1])
        with self._lock:
            self._cache[key] = (now + self._ttl, principal)
        return principal

    def forget(self, client_id: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == client_id]:
                del self._cache[key]


def require(principal: Principal, scope: str) -> None:
    if not principal.allows(scope):
        raise ScopeError(f"this token has scope {principal.scope!r}; the request needs {scope!r}")
