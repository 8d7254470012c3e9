"""Where the profile engine reads resources from.

The engine only needs ``await source.get(uri) -> dict | None`` (``None`` when the resource cannot be read: not
found, not JSON, not an object). A source may also say what a resource's ``Allow`` header was (write and
create/delete checks use it); sources that cannot (a mockup tree on disk) answer ``None`` and those checks are
reported as not testable, exactly as the DMTF tool does for mockup data.

Three sources live here:

- :class:`MockupSource` reads a Redfish-Mockup-Creator tree on disk (``<dir>/redfish/v1/.../index.json``).
- :class:`HttpSource` reads a live service over HTTP(S) with Basic auth or a Redfish session, on the Redfish
  client's keep-alive transport (the ``Allow`` header of every GET is kept for write checks);
  :func:`client_source` adapts an object with ``await client.get(uri) -> dict`` (the redfleet Redfish client).
- :class:`CachedSource` wraps any source so that each URI is read once per validation run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

try:  # orjson is several times faster on large Redfish payloads; json is the fallback.
    import orjson

    def _loads(data: bytes | str) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - depends on the environment

    def _loads(data: bytes | str) -> Any:
        return json.loads(data)


# Characters sent as they are in a request target (everything else, e.g. a space in a captured URI, is
# percent-encoded; "%" stays so that an already encoded URI is not encoded twice).
_URI_SAFE = "/:@!$&'()*+,;=?%~"
# A URI made only of characters that quote() leaves alone is sent as it is (nearly all are; quote() costs a few
# microseconds per read).
_PLAIN_URI = re.compile(r"[A-Za-z0-9_.\-/:@!$&'()*+,;=?%~]*")


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
    """A live Redfish service read over HTTP(S) with the client's keep-alive transport
    (:class:`redfleet.redfish.transport.FastTransport`: asyncio protocol + httptools parser, about a third of
    aiohttp's CPU per request, which decides fleet-wide throughput).

    ``base_url`` is ``scheme://host[:port]``. TLS certificates are not verified unless ``verify`` is set (BMCs ship
    self-signed certificates; fingerprint pinning is the client's business). ``concurrency`` bounds the connections
    (and so the requests in flight) to this one service.
    """

    base_url: str
    auth: HttpAuth = field(default_factory=HttpAuth)
    timeout: float = 30.0
    concurrency: int = 8
    verify: bool = False
    _transport: Any = None
    _token: str | None = None
    _session_uri: str | None = None
    _responses: dict[str, Response] = field(default_factory=dict)
    _headers: dict[str, str] = field(default_factory=dict)
    _relogin_lock: asyncio.Lock | None = None
    relogins: int = 0  # sessions that expired while reading and were opened again
    failures: dict[str, str] = field(default_factory=dict)  # URI -> why it could not be read (not 404s)

    async def __aenter__(self) -> HttpSource:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        from redfleet.redfish.tls import TLSPolicy
        from redfleet.redfish.transport import FastTransport

        self.base_url = self.base_url.rstrip("/")
        policy = TLSPolicy(mode="verify" if self.verify else "insecure")
        self._transport = FastTransport(self.base_url, tls=policy, max_connections=self.concurrency,
                                        connect_timeout=self.timeout)
        self._headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if self.auth.username is not None and self.auth.method == "session":
            await self._login()
        if self._token is None and self.auth.username is not None:
            creds = f"{self.auth.username}:{self.auth.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(creds).decode("ascii")

    async def _login(self) -> None:
        root = await self.fetch("/redfish/v1/")
        sessions = "/redfish/v1/SessionService/Sessions"
        if root.payload:
            link = (root.payload.get("Links") or {}).get("Sessions") or {}
            if isinstance(link, dict) and isinstance(link.get("@odata.id"), str):
                sessions = link["@odata.id"]
        body = json.dumps({"UserName": self.auth.username, "Password": self.auth.password}).encode()
        # "Connection: close": the login gets a connection of its own, and the keep-alive connections that follow
        # carry nothing but GETs (some BMCs, and the simulator, serve a connection that saw a POST more slowly).
        headers = {"Accept": "application/json", "Content-Type": "application/json", "Connection": "close"}
        try:
            resp = await self._transport.request("POST", sessions, headers, body, self.timeout)
        except Exception:  # fall back to Basic auth
            resp = None
        token = resp.header("x-auth-token") if resp is not None and resp.status in (200, 201, 204) else None
        if not token:
            self.auth = HttpAuth(self.auth.username, self.auth.password, "basic")
            return
        self._token = token
        self._headers["X-Auth-Token"] = token
        location = resp.header("location") if resp is not None else None
        if location:
            path = location.split("://", 1)[-1].split("/", 1)[-1] if "://" in location else location
            self._session_uri = "/" + path.lstrip("/")

    async def _relogin(self, stale: str | None) -> None:
        """The session expired (a 401 with its token): log in again, once for all the reads that noticed."""
        if self._relogin_lock is None:
            self._relogin_lock = asyncio.Lock()
        async with self._relogin_lock:
            if self._token != stale:
                return  # another read already logged in again
            self.relogins += 1
            self._headers.pop("X-Auth-Token", None)
            self._token = self._session_uri = None
            await self._login()
            if self._token is None and self.auth.username is not None:
                creds = f"{self.auth.username}:{self.auth.password or ''}".encode()
                self._headers["Authorization"] = "Basic " + base64.b64encode(creds).decode("ascii")

    async def close(self) -> None:
        if self._transport is None:
            return
        if self._session_uri and self._token:
            with contextlib.suppress(Exception):
                await self._transport.request("DELETE", self._session_uri, dict(self._headers), None, self.timeout)
        self._token = None
        await self._transport.close()
        self._transport = None

    async def fetch(self, uri: str) -> Response:
        cached = self._responses.get(uri)
        if cached is not None:
            return cached
        assert self._transport is not None, "open() the source first"
        target = uri if _PLAIN_URI.fullmatch(uri) else quote(uri, safe=_URI_SAFE)
        result = Response(0, None)
        for attempt in range(3):
            token = self._token
            try:
                resp = await self._transport.request("GET", target, self._headers, None, self.timeout)
            except Exception as exc:  # connection refused/reset, timeout: once more, then give up
                result = Response(0, None, error=f"{type(exc).__name__}: {exc}")
                if attempt == 0:
                    await asyncio.sleep(0.2)
                    continue
                break
            if resp.status == 401 and token is not None and attempt < 2:
                await self._relogin(token)
                continue
            payload = None
            if resp.status == 200:
                try:
                    data = _loads(resp.body)
                    payload = data if isinstance(data, dict) else None
                except ValueError:
                    payload = None
            result = Response(resp.status, payload, resp.header("allow"))
            break
        if result.status == 0 or result.status in (401, 403) or result.status >= 500:
            self.failures[uri] = result.error or f"HTTP {result.status}"
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
