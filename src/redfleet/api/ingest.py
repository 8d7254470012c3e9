"""Agent ingest (``POST /api/v1/ingest``): decoding, the checks, the answer; and :class:`FastIngest`, the same
endpoint answered in plain ASGI ahead of FastAPI's middleware, routing and dependencies.

At 10,000 nodes pushing every second serve answers 10,000 ingests a second; FastAPI's per-request machinery alone
(middleware stack, router, request object, dependency resolution) costs more than storing and judging a columnar
batch. :class:`FastIngest` takes the requests that carry ``Authorization: Bearer``; anything else (the dashboard's
cookie, no credentials at all) goes on to the FastAPI route, which gives the same answers through the same
:func:`decode` and :func:`accept`.

Answers (both paths): 200 ``{"accepted_samples", "accepted_events", "node"[, "commands"]}``; 401 unknown token;
403 a token that may not speak for the node; 404 a node not in the fleet; 413 a body over :data:`MAX_BODY`; 422 not
a valid batch (``{"detail": [...]}``, pydantic's error list or one ``columns`` error).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from redfleet.model.ingest import IngestBatch
from redfleet.telemetry.columns import BINARY_TYPE, CONTENT_TYPE, Columns, ColumnsError, split, unframe

INGEST_PATH = "/api/v1/ingest"
MAX_BODY = 64 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# node -> (the GPU identities as last received, validated): an agent sends the same list every second
_GPUS: dict[str, tuple[Any, list[Any]]] = {}


class IngestError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def encoding(content_type: str | None) -> str:
    """"json" (IngestBatch), "columns" (columnar JSON) or "binary" (columnar, binary rows)."""
    if not content_type:
        return "json"
    ct = content_type.split(";", 1)[0].strip().lower()
    return "binary" if ct == BINARY_TYPE else "columns" if ct == CONTENT_TYPE else "json"


def _invalid(exc: ValidationError) -> IngestError:
    return IngestError(422, exc.errors(include_url=False, include_context=False, include_input=False))


def decode(body: bytes, content_type: str | None) -> tuple[IngestBatch, Columns | None]:
    """The batch and, for the columnar encoding, its columns. Raises :class:`IngestError` (422)."""
    enc = encoding(content_type)
    if enc == "json":
        try:  # pydantic-core validates the raw JSON in one pass (no intermediate Python objects)
            return IngestBatch.model_validate_json(body), None
        except ValidationError as exc:
            raise _invalid(exc) from None
    packed = None
    try:
        if enc == "binary":
            doc, packed = unframe(body)
        else:
            doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(422, [{"type": "json_invalid", "loc": ["body"], "msg": f"Invalid JSON: {exc}"}]) from None
    except ColumnsError as exc:
        raise IngestError(422, [{"type": "value_error", "loc": ["body"], "msg": str(exc)}]) from None
    if not isinstance(doc, dict):
        raise IngestError(422, [{"type": "model_type", "loc": ["body"], "msg": "Input should be an object"}])
    try:
        cols = split(doc, packed)
    except ColumnsError as exc:
        raise IngestError(422, [{"type": "value_error", "loc": ["body", "columns"], "msg": str(exc)}]) from None
    gpus = doc.get("gpus")
    node = doc.get("node")
    seen = _GPUS.get(node) if gpus and isinstance(node, str) else None
    if seen is not None and seen[0] == gpus:
        doc["gpus"] = []  # validated when they were first seen: the same list object again (Hub.ingest skips it)
    try:
        batch = IngestBatch.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if seen is not None and seen[0] == gpus:
        batch.gpus = seen[1]
    elif gpus and isinstance(node, str):
        if len(_GPUS) > 200_000:
            _GPUS.clear()
        _GPUS[node] = (gpus, batch.gpus)
    return batch, cols


async def accept(app: Any, principal: Any, batch: IngestBatch, cols: Columns | None) -> bytes:
    """Check that ``principal`` may speak for the batch's node, take the batch in, and answer (with the node's
    pending remediation commands). Raises :class:`IngestError` (403, 404)."""
    if principal.role == "agent":
        if principal.node != batch.node:
            raise IngestError(403, f"this agent token speaks for {principal.node!r}, not {batch.node!r}")
    elif not principal.allows("admin"):
        raise IngestError(403, "ingest needs the node's agent token (or an admin token)")
    hub = app.state.hub
    if batch.node not in hub.nodes:
        recs = await app.state.node_cache.get()
        if batch.node not in recs:
            raise IngestError(404, f"no node {batch.node!r} in the fleet")
    n, e = hub.ingest(batch, cols=cols)
    queue = app.state.commands
    cmds = b""
    if queue is not None:
        if batch.command_results:
            queue.acknowledge(batch.node, batch.command_results)
        pending = queue.take(batch.node)
        if pending:  # remediation's in-band commands (GPU reset, reboot) ride back in the answer
            cmds = b',"commands":' + json.dumps(pending).encode()
    return (b'{"accepted_samples":%d,"accepted_events":%d,"node":%s%s}'
            % (n, e, json.dumps(batch.node).encode(), cmds))


class FastIngest:
    """``POST /api/v1/ingest`` with a bearer token, answered without FastAPI (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the FastAPI app: its state (hub, tokens, node cache, commands)

    @staticmethod
    def takes(scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != INGEST_PATH:
            return False
        return any(k == b"authorization" and v[:7].lower() == b"bearer " for k, v in scope["headers"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = ctype = None
        length = -1
        for k, v in scope["headers"]:
            if k == b"authorization":
                token = v[7:].strip().decode("latin-1")
            elif k == b"content-type":
                ctype = v.decode("latin-1")
            elif k == b"content-length" and v.isdigit():
                length = int(v)
        try:
            if length > MAX_BODY:
                raise IngestError(413, "the batch is too large")
            principal = await self._principal(token or "")
            body = await self._body(receive)
            batch, cols = decode(body, ctype)
            answer = await accept(self.app, principal, batch, cols)
        except IngestError as exc:
            await _send(send, exc.status, orjson.dumps({"detail": exc.detail}), exc.headers)
            return
        await _send(send, 200, answer)

    async def _principal(self, token: str) -> Any:
        cache = self.app.state.tokens
        found, p = cache.cached(token) if token else (True, None)
        if not found:
            p = await run_in_threadpool(cache.resolve, token)
        if p is None:
            raise IngestError(401, "unknown or revoked API token", {"www-authenticate": "Bearer"})
        return p

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        msg = await receive()
        body = msg.get("body", b"")
        if not msg.get("more_body"):
            return bytes(body)
        parts = [body]
        size = len(body)
        while msg.get("more_body"):
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise IngestError(413, "the batch is too large")
            parts.append(chunk)
        return b"".join(parts)


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
