"""A local ingest receiver (aiohttp) standing in for ``redfleet serve``'s ``POST /api/v1/ingest``, on this
helper's loopback block 127.18.0.0/16."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from redfleet.api.ingest import IngestError, decode
from redfleet.model.ingest import IngestBatch

ADDR = "127.18.0.1"


class Receiver:
    """Validates each batch against IngestBatch, checks ``Authorization: Bearer <token>`` (tokens: node → token, or
    one token for all), records what it got. ``fail_next`` answers that many requests with ``fail_status``."""

    def __init__(self, tokens: dict[str, str] | str = "tok", host: str = ADDR) -> None:
        self.tokens = tokens
        self.host = host
        self.batches: list[IngestBatch] = []
        self.columns: list[tuple[str, Any]] = []  # (node, Columns) of each columnar batch
        self.auth_headers: list[str | None] = []
        self.requests = 0
        self.fail_next = 0
        self.fail_status = 503
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.got = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.auth_headers.append(request.headers.get("Authorization"))
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"detail": "busy"}, status=self.fail_status)
        try:  # serve's own decoding: the JSON IngestBatch or a columnar encoding, by Content-Type
            batch, cols = decode(body, request.headers.get("Content-Type"))
        except IngestError as exc:
            return web.json_response({"detail": str(exc.detail)[:500]}, status=exc.status)
        want = self.tokens if isinstance(self.tokens, str) else self.tokens.get(batch.node)
        if request.headers.get("Authorization") != f"Bearer {want}":
            return web.json_response({"detail": "bad token"}, status=401)
        self.batches.append(batch)
        if cols is not None:
            self.columns.append((batch.node, cols))
        self.got.set()
        return web.json_response({"accepted_samples": len(batch.samples), "accepted_events": len(batch.events),
                                  "node": batch.node})

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/ingest", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
