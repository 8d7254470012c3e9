"""Delivery of ingest batches to ``redfleet serve`` (``POST /api/v1/ingest``, ``Authorization: Bearer <token>``).

:class:`Pusher` (the agent, one node): a bounded local buffer (oldest dropped first when full) in front of the
POST; each batch is tried a bounded number of times with exponential backoff and full jitter, each try with a
timeout. A connection error or 5xx/429 means "serve is down or busy": the batch stays buffered and is tried again
at the next flush, in order. Other 4xx (bad token, invalid batch) will not get better by retrying: the batch is
dropped and the error counted and logged.

:class:`PipelinedClient` (the simulator feeder, thousands of nodes): a few keep-alive HTTP/1.1 connections over
which requests are pipelined (written back to back, answers read in order), so 10,000 small POSTs a second cost
a handful of syscalls each rather than a request/response round trip each.

Both hand the bodies of accepted answers back (``Pusher(on_answer=...)``, ``post_many(..., answers=[])``): serve's
answer carries the remediation commands waiting for the node (see :mod:`redfleet.agent.actions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from redfleet.model.ingest import IngestBatch

log = logging.getLogger("redfleet.agent.pusher")

INGEST_PATH = "/api/v1/ingest"
JSON_TYPE = "application/json"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def ingest_url(server: str) -> str:
    server = server.rstrip("/")
    return server if server.endswith(INGEST_PATH) else server + INGEST_PATH


@dataclass
class PushStats:
    sent: int = 0  # batches the server accepted
    attempts: int = 0  # POSTs tried
    retries: int = 0
    rejected: int = 0  # dropped because the server refused them (4xx)
    dropped: int = 0  # dropped from a full buffer (oldest first)
    last_error: str | None = None
    last_status: int | None = None
    errors: list[str] = field(default_factory=list)

    def note(self, msg: str) -> None:
        self.last_error = msg
        self.errors.append(msg)
        del self.errors[:-20]


class Pusher:
    """Buffered, retrying POSTs of one node's batches."""

    def __init__(self, server: str, token: str, *, timeout: float = 5.0, retries: int = 3, backoff: float = 0.25,
                 max_backoff: float = 4.0, buffer_batches: int = 900, buffer_bytes: int = 64 << 20,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 on_answer: Callable[[bytes], None] | None = None, columnar: bool = False) -> None:
        if retries < 1:
            raise ValueError("retries must be >= 1")
        self.url = ingest_url(server)
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.buffer: deque[bytes] = deque()
        self.types: deque[str] = deque()  # each buffered body's Content-Type
        self.columnar = columnar  # IngestBatches in the columnar encoding (serve from this version on)
        self.buffer_batches = buffer_batches
        self.buffer_bytes = buffer_bytes
        self.buffered_bytes = 0
        self.session = session
        self._own_session = session is None
        self.rng = rng or random.Random()
        self.stats = PushStats()
        self.on_answer = on_answer  # called with the body of each accepted answer

    async def __aenter__(self) -> Pusher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4), headers={"User-Agent": "redfleet-agent"})
            self._own_session = True
        return self.session

    # ---- buffer ----------------------------------------------------------------------------------------------
    def submit(self, batch: IngestBatch | bytes) -> None:
        """Queue a batch (oldest ones dropped when the buffer is full). With ``columnar``, an IngestBatch goes out
        in the binary columnar encoding (:mod:`redfleet.telemetry.columns`); bytes are sent as JSON."""
        ctype = JSON_TYPE
        if isinstance(batch, bytes):
            body = batch
        elif self.columnar:
            from redfleet.telemetry.columns import BINARY_TYPE, columnar_body

            body, ctype = columnar_body(batch.model_dump(mode="json")), BINARY_TYPE
        else:
            body = batch.model_dump_json(exclude_defaults=False).encode()
        self.buffer.append(body)
        self.types.append(ctype)
        self.buffered_bytes += len(body)
        while len(self.buffer) > self.buffer_batches or (self.buffered_bytes > self.buffer_bytes
                                                         and len(self.buffer) > 1):
            old = self.buffer.popleft()
            self.types.popleft()
            self.buffered_bytes -= len(old)
            self.stats.dropped += 1

    @property
    def pending(self) -> int:
        return len(self.buffer)

    async def flush(self, deadline: float | None = None) -> bool:
        """Send buffered batches oldest first. True when the buffer is empty; False when serve is unreachable or
        busy (what is left stays buffered) or the deadline (monotonic) passed."""
        while self.buffer:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            body = self.buffer[0]
            outcome = await self._send(body, deadline, self.types[0])
            if outcome == "retry-later":
                return False
            self.buffer.popleft()
            self.types.popleft()
            self.buffered_bytes -= len(body)
        return True

    async def push(self, batch: IngestBatch | bytes, deadline: float | None = None) -> bool:
        self.submit(batch)
        return await self.flush(deadline)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.max_backoff, self.backoff * (2 ** attempt))
        d = self.rng.uniform(0, cap)  # full jitter
        if retry_after is not None:
            d = max(d, min(retry_after, self.max_backoff))
        return d

    async def _send(self, body: bytes, deadline: float | None, ctype: str = "application/json") -> str:
        """'ok' | 'rejected' | 'retry-later'."""
        s = self._session()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype}
        for attempt in range(self.retries):
            self.stats.attempts += 1
            if attempt:
                self.stats.retries += 1
            retry_after: float | None = None
            try:
                async with s.post(self.url, data=body, headers=headers, timeout=self.timeout) as resp:
                    self.stats.last_status = resp.status
                    if resp.status < 300:
                        answer = await resp.read()
                        self.stats.sent += 1
                        if self.on_answer is not None:
                            try:
                                self.on_answer(answer)
                            except Exception:  # a bad answer must not stop the heartbeat
                                log.exception("handling serve's answer failed")
                        return "ok"
                    text = (await resp.text(errors="replace"))[:300]
                    if resp.status not in RETRYABLE:
                        self.stats.rejected += 1
                        msg = f"{self.url}: {resp.status} {text}"
                        self.stats.note(msg)
                        log.error("ingest refused the batch (dropped): %s", msg)
                        return "rejected"
                    self.stats.note(f"{self.url}: {resp.status} {text}")
                    ra = resp.headers.get("Retry-After")
                    with contextlib.suppress(ValueError, TypeError):
                        retry_after = float(ra) if ra else None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.stats.note(f"{self.url}: {type(exc).__name__}: {exc}")
            if attempt + 1 < self.retries:
                d = self._delay(attempt, retry_after)
                if deadline is not None and time.monotonic() + d >= deadline:
                    break
                await asyncio.sleep(d)
        return "retry-later"


# ---- pipelined HTTP/1.1 for the simulator feeder ---------------------------------------------------------------
class PipelineError(OSError):
    pass


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class PipelinedClient:
    """POSTs many bodies to one URL over ``connections`` keep-alive HTTP/1.1 connections, pipelining up to
    ``depth`` requests per connection. :meth:`post_many` returns one status per body (0 = transport error)."""

    def __init__(self, url: str, *, connections: int = 8, depth: int = 64, timeout: float = 10.0,
                 content_type: str = "application/json") -> None:
        u = urlsplit(url)
        if u.scheme != "http":
            raise ValueError(f"pipelined client speaks plain http only, not {u.scheme!r} ({url})")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.hostport = f"{self.host}:{self.port}".encode()
        self.content_type = content_type.encode()
        self.connections = max(1, connections)
        self.depth = max(1, depth)
        self.timeout = timeout
        self.pool: dict[int, _Conn] = {}
        self.errors = 0
        self.last_error: str | None = None

    async def close(self) -> None:
        for c in self.pool.values():
            c.close()
        self.pool.clear()

    async def _connect(self) -> _Conn:
        r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=1 << 20), self.timeout)
        return _Conn(r, w)

    def _request(self, body: bytes, token: str) -> bytes:
        return b"".join((b"POST ", self.path.encode(), b" HTTP/1.1\r\nHost: ", self.hostport,
                         b"\r\nAuthorization: Bearer ", token.encode(),
                         b"\r\nContent-Type: ", self.content_type, b"\r\nContent-Length: ", str(len(body)).encode(),
                         b"\r\n\r\n", body))

    async def _read_response(self, r: asyncio.StreamReader) -> tuple[int, bool, bytes]:
        head = await r.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise PipelineError(f"not an HTTP response: {lines[0][:80]!r}")
        status = int(parts[1])
        length = 0
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v.strip())
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            elif k == b"connection":
                close = v.strip().lower() == b"close"
        body = b""
        if chunked:
            parts_: list[bytes] = []
            while True:
                size = int((await r.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                parts_.append((await r.readexactly(size + 2))[:size])
                if size == 0:
                    break
            body = b"".join(parts_)
        elif length:
            body = await r.readexactly(length)
        return status, close, body

    async def _run_chunk(self, slot: int, items: Sequence[tuple[bytes, str]], out: list[int], base: int,
                         answers: list[bytes] | None) -> None:
        pos = 0
        while pos < len(items):
            conn = self.pool.get(slot)
            try:
                if conn is None or conn.writer.is_closing():
                    conn = await self._connect()
                    self.pool[slot] = conn
                chunk = items[pos:pos + self.depth]
                conn.writer.write(b"".join(self._request(b, t) for b, t in chunk))
                await conn.writer.drain()
                done = 0
                for _ in chunk:
                    status, close, body = await asyncio.wait_for(self._read_response(conn.reader), self.timeout)
                    out[base + pos + done] = status
                    if answers is not None:
                        answers[base + pos + done] = body
                    done += 1
                    if close:  # the server ends the connection: reconnect for the rest
                        conn.close()
                        self.pool.pop(slot, None)
                        break
                pos += done
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                self.pool.pop(slot, None)
                return  # what this connection had not answered stays 0; the caller decides about retrying

    async def post_many(self, items: Sequence[tuple[bytes, str]], *, answers: list[bytes] | None = None) -> list[int]:
        """POST every (body, bearer token); statuses in the same order (0 where the transport failed). With
        ``answers`` (a list), it is filled with the answer bodies in the same order (b"" where none came)."""
        out = [0] * len(items)
        if answers is not None:
            answers[:] = [b""] * len(items)
        if not items:
            return out
        n = min(self.connections, len(items))
        per = (len(items) + n - 1) // n
        await asyncio.gather(*(self._run_chunk(i, items[i * per:(i + 1) * per], out, i * per, answers)
                               for i in range(n)))
        return out
