"""A fast path for the common request: an authenticated GET/HEAD of a resource, with or without query options.

Each connection starts with :class:`FastProtocol` (httptools parser, responses written straight to the transport).
A plain GET is answered from the node's bytes; one with a query string (``$expand``, ``$select``, ``only``,
``$skip``/``$top``) or of a log collection by the same function the aiohttp handler uses
(:meth:`RedfishHandler.answer_get`). The first request it cannot answer alone (any other method, a session or
task-monitor URI, latency or throttling in force, a URI the dynamic side takes, a failed authentication) hands the
connection over to the aiohttp handler: the unanswered bytes are replayed into an aiohttp ``RequestHandler`` that
keeps the connection from then on. Response bodies and headers are what the aiohttp path sends for the same request
at the same simulated instant (aiohttp adds its ``Server`` header).
"""

from __future__ import annotations

import asyncio
import re
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import httptools
import orjson
from aiohttp import web

from redfleet.sim.errors import error_body
from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.fleet import SimFleet
    from redfleet.sim.node import SimNode

_OPEN = frozenset({b"/redfish", b"/redfish/", b"/redfish/v1", b"/redfish/v1/", b"/redfish/v1/odata",
                   b"/redfish/v1/$metadata"})

_ENTRIES = re.compile(r"/LogServices/[^/]+/Entries$", re.IGNORECASE)  # a log: paged as the aiohttp path does

_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[no-any-return,unused-ignore]


class FastProtocol(asyncio.Protocol):
    __slots__ = ("_body", "_busy", "_close_after", "_done", "_fleet", "_headers", "_method", "_node", "_parser",
                 "_raw", "_slow", "_transport", "_url")

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._transport: Any = None
        self._node: SimNode | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._raw = bytearray()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._method = b""
        self._body = b""
        self._slow = False
        self._busy = False  # a message has begun and is not complete
        self._done: list[tuple[bytes, bytes, dict[bytes, bytes], bool, bytes]] = []
        self._close_after = False

    # ---- asyncio -------------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._fleet._fast_conns.add(self)
        sock = transport.get_extra_info("sockname")
        self._node = self._fleet.node_by_address(sock[0]) if sock else None
        if self._node is None:
            self._handover()

    def data_received(self, data: bytes) -> None:
        self._raw += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._slow = True
        except httptools.HttpParserError:
            self._slow = True
        if self._slow:
            self._handover()
            return
        if self._busy or not self._done:
            return  # wait for the message boundary before answering anything
        done, self._done = self._done, []
        self._raw.clear()
        out = []
        for method, url, headers, keep, body in done:
            if not keep:
                self._close_after = True
            out.append(self._answer(method, url, headers, body))
            if not keep:
                break
        self._transport.write(b"".join(out))
        if self._close_after:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fleet._fast_conns.discard(self)

    # ---- httptools callbacks -------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._busy = True
        self._url = b""
        self._headers = {}

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        method = self._parser.get_method()
        self._method = method
        self._body = b""
        if method in (b"GET", b"HEAD"):
            ok = self._can_serve(self._url)
        elif method == b"POST":
            ok = self._can_login(self._url)
        elif method == b"DELETE":
            ok = self._can_logout(self._url)
        else:
            ok = False
        if not ok:
            self._slow = True

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self._busy = False
        self._done.append((self._method, self._url, self._headers, self._parser.should_keep_alive(), self._body))

    # ---- decisions -----------------------------------------------------------------------------------------
    def _node_ok(self) -> SimNode | None:
        """The node, when nothing in its state asks for the aiohttp handler (down, throttled, slow, faulty JSON)."""
        node = self._node
        if node is None or node.down or node.throttle_until or node.slow is not None:
            return None
        if node.bad_json or self._fleet.latency is not None:
            return None
        return node

    def _authorized(self, node: SimNode) -> bool:
        """As RedfishHandler._authenticate would decide (a session token, or the fleet's Basic credentials)."""
        headers = self._headers
        token = headers.get(b"x-auth-token")
        if token is not None:
            return node.session_by_token(token.decode("latin-1")) is not None
        return node.password is None and headers.get(b"authorization") == self._fleet.basic_header

    @staticmethod
    def _path(raw_path: bytes) -> str:
        path = raw_path.decode("latin-1")
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        return path

    def _can_serve(self, url: bytes) -> bool:
        node = self._node_ok()
        if node is None:
            return False
        raw_path, _, query = url.partition(b"?")
        if b"%" in raw_path or b"//" in raw_path or b"#" in url:
            return False
        path = self._path(raw_path)
        if node.dyn.takes("GET", path):
            return False
        low = path.lower()
        if low.startswith(node.facts.session_collection.lower()) or "/taskmonitors/" in low:
            return False
        if (query or raw_path not in _OPEN) and not self._authorized(node):
            return False
        canon = node.resolve(path)
        return canon is not None and node.visible(canon)

    def _can_login(self, url: bytes) -> bool:
        """A POST to the session collection (a login: no authentication needed)."""
        node = self._node_ok()
        if node is None or b"?" in url or b"%" in url or b"//" in url or b"expect" in self._headers:
            return False
        path = self._path(url)
        return path.lower() == node.facts.session_collection.lower() and not node.dyn.takes("POST", path)

    def _can_logout(self, url: bytes) -> bool:
        """A DELETE of one of the node's sessions (a logout), authenticated."""
        node = self._node_ok()
        if node is None or b"?" in url or b"%" in url or b"//" in url:
            return False
        path = self._path(url)
        return (node.session_by_path(path) is not None and not node.dyn.takes("DELETE", path)
                and self._authorized(node))

    def _answer(self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        node = self._node
        assert node is not None
        handler = self._fleet.handler
        assert handler is not None
        if method == b"POST":
            return self._other(handler.login(node, handler.parse_body(body)), method)
        if method == b"DELETE":
            return self._other(handler.delete(node, self._path(url), None), method)
        raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("latin-1")
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        canon = node.resolve(path)
        if canon is not None and (query or _ENTRIES.search(canon)):
            got = handler.answer_get(node, path, query.decode("latin-1"))
            if not isinstance(got, tuple):
                return self._other(got, method)
            body, ctype, canon = got
            is_json = ctype == JSON_TYPE
            etag = node.etag(canon).encode() if is_json else None
            allow = node.allow(canon).encode() if is_json else None
            return self._response(b"200 OK", body, ctype.encode(), etag, method, allow)
        out = node.render_bytes(canon) if canon is not None else None
        if out is None:
            body = orjson.dumps(error_body("ResourceMissingAtURI", path))
            return self._response(b"404 Not Found", body, b"application/json;charset=utf-8", None, method)
        body, ctype = out
        is_json = ctype.startswith("application/json")
        etag = node.etag(canon).encode() if is_json else None  # type: ignore[arg-type]
        allow = node.allow(canon).encode() if is_json else None  # type: ignore[arg-type]
        return self._response(b"200 OK", body, ctype.encode(), etag, method, allow)

    def _response(self, status: bytes, body: bytes, ctype: bytes, etag: bytes | None, method: bytes,
                  allow: bytes | None = None) -> bytes:
        head = [
            b"HTTP/1.1 ", status, b"\r\nContent-Type: ", ctype, b"\r\nOData-Version: 4.0\r\nCache-Control: no-cache",
            b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\nDate: ", _date(),
        ]
        if etag is not None:
            head += [b"\r\nETag: ", etag]
        if allow is not None:
            head += [b"\r\nAllow: ", allow]
        if self._close_after:
            head.append(b"\r\nConnection: close")
        head.append(b"\r\n\r\n")
        if method != b"HEAD":
            head.append(body)
        return b"".join(head)

    def _other(self, resp: web.StreamResponse, method: bytes) -> bytes:
        """A response the handler's code built for aiohttp (an error, a login's 201, a logout's 204), as bytes."""
        body = resp.body if isinstance(resp, web.Response) else b""
        if not isinstance(body, bytes):
            body = b""
        head = [f"HTTP/1.1 {resp.status} {resp.reason}".encode()]
        for name, value in resp.headers.items():
            if name.lower() not in ("content-length", "date", "connection"):
                head += [b"\r\n", name.encode("latin-1"), b": ", value.encode("latin-1")]
        if resp.status in (204, 304):  # no body, no Content-Length (RFC 9110 8.6), as aiohttp sends them
            body = b""
            head += [b"\r\nDate: ", _date()]
        else:
            head += [b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\nDate: ", _date()]
        if self._close_after:
            head.append(b"\r\nConnection: close")
        head.append(b"\r\n\r\n")
        if method != b"HEAD":
            head.append(body)
        return b"".join(head)

    # ---- hand-over -----------------------------------------------------------------------------------------
    def _handover(self) -> None:
        transport = self._transport
        self._fleet._fast_conns.discard(self)
        if transport is None:
            return
        self._transport = None
        server = self._fleet.aiohttp_server
        handler = server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        raw, self._raw = bytes(self._raw), bytearray()
        if raw:
            handler.data_received(raw)
