"""HTTP/1.1 transports for the Redfish client.

Two implementations of one small interface (:class:`Transport`), chosen per client:

- :class:`FastTransport` (default): asyncio protocol + ``httptools`` parser (uvloop when installed), a keep-alive
  pool per BMC. Measured on this project's 2-core machine it spends about a third of the CPU per request that
  aiohttp's client does (see ``benchmarks/client_bench.py --transports``), which is what decides fleet-wide
  throughput when one process talks to thousands of BMCs.
- :class:`AiohttpTransport`: aiohttp's client, kept as the reference and for environments that need its extras.

Both check the TLS policy (:mod:`redfleet.redfish.tls`) on every new connection *before* any byte is sent, so a
BMC whose certificate changed never sees the credentials.
"""

# ruff: noqa: ASYNC109  (per-request timeouts are part of the API: each kind of resource has its own)
from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from redfleet.redfish.errors import CertificateChanged, ConnectionFailed, MalformedResponse, RequestTimeout, TLSError
from redfleet.redfish.tls import TLSPolicy, bmc_key, cached_ssl_context, fingerprint_der, normalize_fingerprint

try:  # pragma: no cover - import guard
    import httptools
except ImportError:  # pragma: no cover
    httptools = None  # type: ignore[assignment]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    url: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class Transport(Protocol):
    base_url: str

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response: ...

    async def close(self) -> None: ...


@dataclass
class Endpoint:
    """Where a BMC is: scheme, host, port; ``base_url`` without a trailing slash."""

    scheme: str
    host: str
    port: int
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        self.base_url = f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        if "://" not in url:
            url = "https://" + url
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) BMC URL: {url!r}")
        if not parts.hostname:
            raise ValueError(f"BMC URL without a host: {url!r}")
        return cls(scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))


class _PinChecker:
    """Checks a freshly handshaken certificate against the TLS policy's pin (TOFU when none is stored)."""

    def __init__(self, policy: TLSPolicy, base_url: str) -> None:
        self.policy = policy
        self.key = bmc_key(base_url)
        self.base_url = base_url

    def expected(self) -> str | None:
        pinned = self.policy.pin_store.get(self.key) if self.policy.pin_store is not None else None
        if pinned:
            return pinned
        return normalize_fingerprint(self.policy.fingerprint) if self.policy.fingerprint else None

    def check(self, der: bytes | None) -> None:
        if self.policy.mode != "pin":
            return
        if not der:
            raise TLSError("TLS peer presented no certificate", bmc=self.base_url)
        presented = fingerprint_der(der)
        expected = self.expected()
        if expected is None:
            if self.policy.pin_store is not None:
                self.policy.pin_store.put(self.key, presented)  # trust on first use
            return
        if presented != expected:
            raise CertificateChanged(
                f"certificate changed: pinned {expected}, BMC now presents {presented}; refusing to talk to it "
                "until an operator accepts the new certificate (--accept-new-cert)",
                bmc=self.base_url,
                expected=expected,
                presented=presented,
            )
        if self.policy.pin_store is not None and self.policy.pin_store.get(self.key) is None:
            self.policy.pin_store.put(self.key, presented)


# ----------------------------------------------------------------------------------------------------------------
# Fast transport


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    __slots__ = (
        "_body",
        "_got_bytes",
        "_headers",
        "_last_name",
        "_parser",
        "_waiter",
        "closed",
        "keep_alive",
        "transport",
        "uses",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._parser: Any = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._last_name = ""
        self.closed = False
        self.keep_alive = True
        self._got_bytes = False
        self.uses = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._parser is None:  # unsolicited bytes: the connection is no longer usable
            self.keep_alive = False
            self._close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - no upgrades asked for
            self._fail(MalformedResponse("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self._waiter
        if w is not None and not w.done():
            # A response without Content-Length ends at EOF.
            if self._parser is not None and self._got_bytes:
                try:
                    self._parser.feed_eof()
                except httptools.HttpParserError:
                    pass
            if not w.done():
                w.set_exception(_Dropped(self._got_bytes, exc))

    def eof_received(self) -> bool | None:
        return None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        if key in self._headers:
            self._headers[key] += ", " + val
        else:
            self._headers[key] = val

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        self.keep_alive = bool(parser.should_keep_alive())
        resp = Response(status, self._headers, b"".join(self._body))
        self._parser = None
        w = self._waiter
        self._waiter = None
        if w is not None and not w.done():
            w.set_result(resp)

    def _fail(self, exc: Exception) -> None:
        w = self._waiter
        self._waiter = None
        self.keep_alive = False
        if w is not None and not w.done():
            w.set_exception(exc)
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._headers = {}
        self._body = []
        self._got_bytes = False
        self._parser = httptools.HttpResponseParser(self)
        self.uses += 1
        self.transport.write(data)
        return self._waiter


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Dropped(Exception):
    def __init__(self, got_bytes: bool, cause: Exception | None) -> None:
        super().__init__(str(cause) if cause else "connection closed by the BMC")
        self.got_bytes = got_bytes
        self.cause = cause


class FastTransport:
    """Keep-alive connection pool to one BMC (at most ``max_connections`` open)."""

    def __init__(
        self,
        base_url: str,
        *,
        tls: TLSPolicy | None = None,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        if httptools is None:  # pragma: no cover
            raise RuntimeError("httptools is not installed; use transport='aiohttp'")
        self.endpoint = Endpoint.parse(base_url)
        self.base_url = self.endpoint.base_url
        self.tls = tls or TLSPolicy()
        self.max_connections = max(1, max_connections)
        self.connect_timeout = connect_timeout
        self.local_addr = local_addr
        self._idle: list[_Conn] = []
        self._open = 0
        self._slots = asyncio.Semaphore(self.max_connections)
        self._pin = _PinChecker(self.tls, self.base_url)
        self._host_header = self.endpoint.base_url.split("://", 1)[1]
        self._closed = False

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        sslctx: ssl.SSLContext | None = None
        server_hostname = None
        if ep.scheme == "https":
            sslctx = cached_ssl_context(self.tls)
            server_hostname = ep.host if self.tls.mode == "verify" else ""
        try:
            async with asyncio.timeout(self.connect_timeout):
                _t, conn = await loop.create_connection(
                    _Conn, ep.host, ep.port, ssl=sslctx, server_hostname=server_hostname, local_addr=self.local_addr
                )
        except TimeoutError as exc:
            raise RequestTimeout(f"no connection within {self.connect_timeout:g} s", bmc=self.base_url) from exc
        except ssl.SSLCertVerificationError as exc:
            raise TLSError(
                f"certificate not trusted: {exc.verify_message or exc} (give --ca-bundle, pin it with --pin, "
                "or --insecure)", bmc=self.base_url) from exc
        except ssl.SSLError as exc:
            raise TLSError(f"TLS handshake failed: {exc}", bmc=self.base_url) from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect: {exc.strerror or exc}", bmc=self.base_url) from exc
        if sslctx is not None and self.tls.mode == "pin":
            sslobj = conn.transport.get_extra_info("ssl_object") if conn.transport else None
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            try:
                self._pin.check(der)
            except BaseException:
                conn._close()
                raise
        self._open += 1
        return conn

    def _release(self, conn: _Conn) -> None:
        if conn.closed or not conn.keep_alive or self._closed:
            if not conn.closed:
                conn._close()
            self._open -= 1
        else:
            self._idle.append(conn)

    def _discard(self, conn: _Conn) -> None:
        conn._close()
        self._open -= 1

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        if self._closed:
            raise ConnectionFailed("transport closed", bmc=self.base_url)
        head = [f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for k, v in headers.items():
            head.append(f"{k}: {v}\r\n")
        if body is not None or method in ("POST", "PATCH", "PUT"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1")
        if body:
            data += body
        loop = asyncio.get_running_loop()
        async with self._slots:
            for attempt in (0, 1):
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else None
                if conn is not None and conn.closed:
                    self._open -= 1
                    conn = None
                    reused = False
                try:
                    deadline = loop.time() + timeout
                    if conn is None:
                        async with asyncio.timeout_at(deadline):
                            conn = await self._connect()
                    # the answer's wait: a plain timer on the waiter, a few microseconds cheaper than a timeout
                    # context per request (thousands of BMCs, tens of requests each)
                    waiter = conn.send(data)
                    timer = loop.call_at(deadline, _expire, waiter)
                    try:
                        resp = await waiter
                    finally:
                        timer.cancel()
                except TimeoutError as exc:
                    if conn is not None:
                        self._discard(conn)
                    raise RequestTimeout(
                        f"{method} got no complete answer within {timeout:g} s", bmc=self.base_url, uri=target
                    ) from exc
                except _Dropped as exc:
                    self._discard(conn)  # type: ignore[arg-type]
                    if reused and not exc.got_bytes and attempt == 0:
                        continue  # stale keep-alive connection closed by the BMC: one retry on a fresh one
                    raise ConnectionFailed(
                        f"{method}: connection closed by the BMC before a complete answer",
                        bmc=self.base_url,
                        uri=target,
                    ) from exc
                except MalformedResponse as exc:
                    if conn is not None and not conn.closed:
                        self._discard(conn)
                    elif conn is not None:
                        self._open -= 1
                    exc.bmc, exc.uri = self.base_url, target
                    raise
                except asyncio.CancelledError:
                    if conn is not None:
                        self._discard(conn)
                    raise
                except BaseException:
                    if conn is not None:
                        self._discard(conn)
                    raise
                self._release(conn)
                resp.url = target
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def drop_idle(self) -> None:
        """Close the idle keep-alive connections (the pool opens new ones on demand)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                conn._close()
            self._open -= 1

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()._close()
        self._open = 0


# ----------------------------------------------------------------------------------------------------------------
# aiohttp transport


class AiohttpTransport:
    """The same interface over aiohttp. TLS pinning: a probe handshake learns the certificate (TOFU) and every
    request then carries ``aiohttp.Fingerprint``; a mismatch maps to CertificateChanged."""

    def __init__(
        self,
        base_url: str,
        *,
        tls: TLSPolicy | None = None,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        session: Any = None,
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.endpoint = Endpoint.parse(base_url)
        self.base_url = self.endpoint.base_url
        self.tls = tls or TLSPolicy()
        self.connect_timeout = connect_timeout
        self._own_session = session is None
        self._session = session
        self._max = max_connections
        self._pin = _PinChecker(self.tls, self.base_url)
        self._ssl: Any = None
        self._ready = False

    async def _setup(self) -> None:
        aiohttp = self._aiohttp
        if self.endpoint.scheme == "https":
            ctx = cached_ssl_context(self.tls)
            if self.tls.mode == "pin":
                expected = self._pin.expected()
                if expected is None:
                    der = await self._probe_cert(ctx)
                    self._pin.check(der)
                    expected = self._pin.expected() or fingerprint_der(der or b"")
                self._ssl = aiohttp.Fingerprint(bytes.fromhex(expected.split(":", 1)[1]))
            else:
                self._ssl = ctx
        else:
            self._ssl = None
        if self._session is None:
            conn = aiohttp.TCPConnector(limit=self._max, limit_per_host=self._max)
            self._session = aiohttp.ClientSession(connector=conn, auto_decompress=True)
        self._ready = True

    async def _probe_cert(self, ctx: ssl.SSLContext) -> bytes | None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _reader, writer = await asyncio.open_connection(
                    self.endpoint.host, self.endpoint.port, ssl=ctx, server_hostname=""
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"cannot connect: {exc}", bmc=self.base_url) from exc
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return der

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        aiohttp = self._aiohttp
        if not self._ready:
            await self._setup()
        url = self.base_url + target
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(
                    method, url, headers=headers, data=body, ssl=self._ssl if self._ssl is not None else False,
                    allow_redirects=False,
                ) as r:
                    raw = await r.read()
                    hdrs: dict[str, str] = {}
                    for k, v in r.headers.items():
                        lk = k.lower()
                        hdrs[lk] = hdrs[lk] + ", " + v if lk in hdrs else v
                    return Response(r.status, hdrs, raw, target)
        except TimeoutError as exc:
            raise RequestTimeout(f"{method} got no complete answer within {timeout:g} s", bmc=self.base_url,
                                 uri=target) from exc
        except aiohttp.ServerFingerprintMismatch as exc:
            raise CertificateChanged(
                "certificate changed: pinned sha256:" + exc.expected.hex() + ", BMC now presents sha256:"
                + exc.got.hex() + "; refusing to talk to it until an operator accepts the new certificate",
                bmc=self.base_url, expected="sha256:" + exc.expected.hex(), presented="sha256:" + exc.got.hex(),
            ) from exc
        except aiohttp.ClientSSLError as exc:
            raise TLSError(f"TLS failed: {exc}", bmc=self.base_url) from exc
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionFailed(f"{method}: incomplete answer: {exc}", bmc=self.base_url, uri=target) from exc
        except aiohttp.ClientResponseError as exc:
            raise MalformedResponse(f"malformed HTTP response: {exc}", bmc=self.base_url, uri=target) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise ConnectionFailed(f"{method}: {exc}", bmc=self.base_url, uri=target) from exc

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None
        self._ready = False


def make_transport(kind: str, base_url: str, **kw: Any) -> Transport:
    if kind == "fast":
        return FastTransport(base_url, **kw)
    if kind == "aiohttp":
        kw.pop("local_addr", None)
        return AiohttpTransport(base_url, **kw)
    raise ValueError(f"unknown transport {kind!r} (fast | aiohttp)")
