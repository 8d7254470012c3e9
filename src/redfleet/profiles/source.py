"""Where the profile engine reads resources from.

The engine only needs ``await source.get(uri) -> dict | None`` (``None`` when the resource cannot be read: not
found, not JSON, not an object). A source may also say what a resource's ``Allow`` header was (write and
create/delete checks use it); sources that cannot (a mockup tree on disk) answer ``None`` and those checks are
reported as not testable, exactly as the DMTF tool does for mockup data.

Three sources live here:

- :class:`MockupSource` reads a Redfish-Mockup-Creator tree on disk (``<dir>/redfish/v1/.../index.json``).
- :class:`HttpSource` reads a live service over HTTP(S) with aiohttp, with Basic auth or a Redfish session. It is
  self-contained so that the profile engine does not depend on the fleet client; :func:`client_source` adapts an
  object with ``await client.get(uri) -> dict`` (the redfleet Redfish client) instead, when one is at hand.
- :class:`CachedSource` wraps any source so that each URI is read once per validation run.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

try:  # orjson is several times faster on large Redfish payloads; json is the fallback.
    import orjson

    def _loads(data: bytes | str) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - depends on the environment

    def _loads(data: bytes | str) -> Any:
        return json.loads(data)


@runtime_checkable
class ResourceSource(Protocol):
    """Anything that can read a Redfish resource by URI."""

    async def get(self, uri: str) -> dict[str, Any] | None: ...


@dataclass
class Response:
    """One read: HTTP status (0 when the request itself failed), the JSON object, and the Allow header."""

    status: int
    payload: dict[str, Any] | None
    allow: str | None = None
    error: str | None = None


class MockupSource:
    """Resources from a mockup tree on disk; URIs map to ``<root><uri>/index.json``.

    Lookup is exact first, then case-insensitive (some BMCs link with other case than the captured folders, and
    real services answer either way).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._dir_cache: dict[Path, dict[str, str]] = {}

    def _resolve(self, uri: str) -> Path | None:
        path = uri.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        exact = self.root / path.lstrip("/") / "index.json"
        if exact.is_file():
            return exact
        current = self.root
        for part in [p for p in path.split("/") if p]:
            listing = self._dir_cache.get(current)
            if listing is None:
                try:
                    listing = {child.name.lower(): child.name for child in current.iterdir() if child.is_dir()}
                except OSError:
                    return None
                self._dir_cache[current] = listing
            name = listing.get(part.lower())
            if name is None:
                return None
            current = current / name
        candidate = current / "index.json"
        return candidate if candidate.is_file() else None

    def read(self, uri: str) -> Response:
        file = self._resolve(uri)
        if file is None:
            return Response(404, None)
        try:
            data = _loads(file.read_bytes())
        except (OSError, ValueError) as exc:
            return Response(200, None, error=str(exc))
        return Response(200, data if isinstance(data, dict) else None)

    async def get(self, uri: str) -> dict[str, Any] | None:
        return self.read(uri).payload

    def allow_header(self, uri: str) -> str | None:
        return None


@dataclass
class HttpAuth:
    username: str | None = None
    password: str | None = None
    # "session" (create a Redfish session, as the DMTF tool does by default) or "basic"
    method: str = "session"


@dataclass
class HttpSource:
    """A live Redfish service read with aiohttp.

    ``base_url`` is ``scheme://host[:port]``. TLS certificates are not verified unless ``verify`` is set (BMCs ship
    self-signed certificates; fingerprint pinning is the client's business). ``concurrency`` bounds requests in
    flight to this one service.
    """

    base_url: str
    auth: HttpAuth = field(default_factory=HttpAuth)
    timeout: float = 30.0
    concurrency: int = 8
    verify: bool = False
    session: Any = None  # an aiohttp.ClientSession to share across many targets, or None to own one
    _own_session: bool = False
    _token: str | None = None
    _session_uri: str | None = None
    _responses: dict[str, Response] = field(default_factory=dict)
    _sem: asyncio.Semaphore | None = None
    tls_version: str | None = None
    _ctx: ssl.SSLContext | None = None

    async def __aenter__(self) -> HttpSource:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        import aiohttp

        self.base_url = self.base_url.rstrip("/")
        if self.session is None:
            connector = aiohttp.TCPConnector(limit_per_host=self.concurrency, ssl=self._ssl_context())
            self.session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            self._own_session = True
        self._sem = asyncio.Semaphore(self.concurrency)
        if self.auth.username is not None and self.auth.method == "session":
            await self._login()

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.base_url.startswith("https"):
            return False
        if self._ctx is None:
            if self.verify:
                self._ctx = ssl.create_default_context()
            else:
                self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        return self._ctx

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if self._token:
            headers["X-Auth-Token"] = self._token
        return headers

    def _basic(self) -> Any:
        import aiohttp

        if self._token is None and self.auth.username is not None:
            return aiohttp.BasicAuth(self.auth.username, self.auth.password or "")
        return None

    async def _login(self) -> None:
        root = await self.fetch("/redfish/v1/")
        sessions = "/redfish/v1/SessionService/Sessions"
        if root.payload:
            sessions = root.payload.get("Links", {}).get("Sessions", {}).get("@odata.id", sessions)
        body = {"UserName": self.auth.username, "Password": self.auth.password}
        try:
            async with self.session.post(
                self.base_url + sessions, json=body, headers={"Accept": "application/json"}, ssl=self._ssl_context()
            ) as resp:
                if resp.status in (200, 201, 204) and resp.headers.get("X-Auth-Token"):
                    self._token = resp.headers["X-Auth-Token"]
                    location = resp.headers.get("Location")
                    if location:
                        self._session_uri = location.split("://", 1)[-1].split("/", 1)[-1]
                        self._session_uri = "/" + self._session_uri.lstrip("/")
                    self._remember_tls(resp)
                    return
        except Exception:  # fall back to Basic auth below
            pass
        self.auth = HttpAuth(self.auth.username, self.auth.password, "basic")

    def _remember_tls(self, resp: Any) -> None:
        if self.tls_version is not None:
            return
        try:
            ssl_obj = resp.connection.transport.get_extra_info("ssl_object") if resp.connection else None
        except Exception:
            ssl_obj = None
        if ssl_obj is not None:
            self.tls_version = ssl_obj.version()

    async def close(self) -> None:
        if self.session is None:
            return
        if self._session_uri and self._token:
            try:
                async with self.session.delete(
                    self.base_url + self._session_uri, headers=self._headers(), ssl=self._ssl_context()
                ):
                    pass
            except Exception:
                pass
        self._token = None
        if self._own_session:
            await self.session.close()
            self.session = None

    async def fetch(self, uri: str) -> Response:
        cached = self._responses.get(uri)
        if cached is not None:
            return cached
        assert self._sem is not None, "open() the source first"
        async with self._sem:
            try:
                async with self.session.get(
                    self.base_url + uri, headers=self._headers(), auth=self._basic(), ssl=self._ssl_context()
                ) as resp:
                    self._remember_tls(resp)
                    raw = await resp.read()
                    payload = None
                    if resp.status == 200:
                        try:
                            data = _loads(raw)
                            payload = data if isinstance(data, dict) else None
                        except ValueError:
                            payload = None
                    result = Response(resp.status, payload, resp.headers.get("Allow"))
            except Exception as exc:
                result = Response(0, None, error=f"{type(exc).__name__}: {exc}")
        self._responses[uri] = result
        return result

    async def get(self, uri: str) -> dict[str, Any] | None:
        return (await self.fetch(uri)).payload

    def allow_header(self, uri: str) -> str | None:
        cached = self._responses.get(uri)
        return cached.allow if cached else None


class ClientSource:
    """Adapts any object with ``await get(uri) -> dict`` (the redfleet Redfish client) to a source.

    Exceptions from the client count as unreadable resources. When the client can say what the Allow header
    was (``allow_header(uri)`` or ``last_headers(uri)``), write checks use it.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, uri: str) -> dict[str, Any] | None:
        try:
            data = await self.client.get(uri)
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    def allow_header(self, uri: str) -> str | None:
        for name in ("allow_header", "last_allow"):
            fn = getattr(self.client, name, None)
            if callable(fn):
                try:
                    value = fn(uri)
                except Exception:
                    return None
                return value if isinstance(value, str) else None
        return None


def client_source(client: Any) -> ClientSource:
    return ClientSource(client)


class CachedSource:
    """Reads each URI once; concurrent reads of the same URI share one request."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[str, dict[str, Any] | None] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self.reads = 0

    async def get(self, uri: str) -> dict[str, Any] | None:
        if uri in self.cache:
            return self.cache[uri]
        pending = self._inflight.get(uri)
        if pending is not None:
            return await pending
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._inflight[uri] = fut
        try:
            self.reads += 1
            value = await self.inner.get(uri)
        except Exception:
            value = None
        self.cache[uri] = value
        del self._inflight[uri]
        fut.set_result(value)
        return value

    def allow_header(self, uri: str) -> str | None:
        fn: Callable[[str], str | None] | None = getattr(self.inner, "allow_header", None)
        return fn(uri) if fn else None


Getter = Callable[[str], Awaitable[dict[str, Any] | None]]
