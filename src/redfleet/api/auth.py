"""Bearer-token auth for the API. Roles, weakest first: viewer (read), operator (read + change nodes), admin (+
tokens, audit); ``agent`` tokens speak for one node and may only ingest. Tokens are looked up by SHA-256 (cached a
short while, so a request costs no database round trip); a ``--dev-token`` is an admin token held in memory.

The web dashboard keeps the same token in an HttpOnly, SameSite=Strict cookie (:data:`COOKIE`); a request without
an ``Authorization`` header is authenticated by that cookie. A cookie travels with any request the browser makes,
so a state-changing request (not GET/HEAD/OPTIONS) that only has the cookie must also prove it comes from the
dashboard itself: the :data:`CSRF_HEADER` header (a cross-site form cannot set headers, and a cross-site script
cannot send one without a CORS preflight this app never grants) and, when the browser sends ``Origin``, an origin
equal to the app's own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from redfleet.store import FleetStore
from redfleet.store.tokens import RANK, digest, lookup

bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer <token>`")
COOKIE = "redfleet_token"
CSRF_HEADER = "x-redfleet-csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    node: str | None = None

    def allows(self, role: str) -> bool:
        return RANK.get(self.role, 0) >= RANK[role]


class TokenCache:
    """digest -> (Principal | None, expiry)."""

    def __init__(self, store: FleetStore | None, dev_token: str | None = None, ttl: float = 30.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self.dev_digest = digest(dev_token) if dev_token else None

    def forget(self) -> None:
        self._cache.clear()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        d = digest(token)
        if self.dev_digest is not None and d == self.dev_digest:
            return True, Principal("dev-token", "admin")
        hit = self._cache.get(d)
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def resolve(self, token: str) -> Principal | None:
        found, p = self.cached(token)
        if found:
            return p
        if self.store is None:
            return None
        info = self.store.transaction(lambda s: lookup(s, token), write=False)
        p = Principal(info.name, info.role, info.node) if info is not None else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[digest(token)] = (p, time.monotonic() + self.ttl)
        return p


def _same_origin(request: Request) -> bool:
    """True when the request's ``Origin`` (if the browser sent one) is this app's own scheme://host[:port]."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}", f"http://{host}", f"https://{host}")


def _token_of(request: Request, creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is not None and creds.credentials:
        return creds.credentials
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise HTTPException(401, "an API token is needed: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS:
        if not request.headers.get(CSRF_HEADER):
            raise HTTPException(403, f"a request authenticated by the dashboard cookie needs the {CSRF_HEADER} "
                                     "header (or an Authorization header)")
        if not _same_origin(request):
            raise HTTPException(403, "cross-origin request refused (Origin is not this server)")
    return cookie


async def resolve_token(request: Request, token: str) -> Principal | None:
    """The Principal a token stands for (None when unknown or revoked); used by the dashboard's login too."""
    cache: TokenCache = request.app.state.tokens
    found, p = cache.cached(token)
    if not found:
        p = await run_in_threadpool(cache.resolve, token)
    return p


async def principal(request: Request) -> Principal:
    creds: HTTPAuthorizationCredentials | None = await bearer(request)
    token = _token_of(request, creds)
    p = await resolve_token(request, token)
    if p is None:
        raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
    return p


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's Principal, with at least ``role``."""

    async def dep(request: Request) -> Principal:
        p = await principal(request)
        if not p.allows(role):
            raise HTTPException(403, f"this needs the {role} role; the token {p.name!r} has {p.role}")
        request.state.principal = p
        return p

    return dep


def require_by_method(read: str = "viewer", write: str = "operator") -> Callable[[Request], Awaitable[Principal]]:
    """For routers that mix reads and writes (GET/HEAD: ``read``; anything else: ``write``)."""

    async def dep(request: Request) -> Principal:
        role = read if request.method in ("GET", "HEAD", "OPTIONS") else write
        return await require(role)(request)

    return dep
