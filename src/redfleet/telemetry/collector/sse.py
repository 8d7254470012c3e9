"""Redfish Server-Sent Events (DSP0266 "Server-sent events"): read the stream a BMC advertises as
``EventService.ServerSentEventUri`` and hand every event record to a callback. Reconnecting is the caller's job
(the collector retries with backoff)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from redfleet.redfish import RedfishClient
from redfleet.redfish.errors import RedfishError
from redfleet.redfish.tls import PinStore, normalize_fingerprint

log = logging.getLogger(__name__)


async def sse_uri(client: RedfishClient) -> str | None:
    """The BMC's SSE URI, or None when its EventService has none."""
    es = client.caps.services.get("EventService")
    if not es:
        return None
    try:
        doc = await client.get(es)
    except RedfishError:
        return None
    uri = doc.get("ServerSentEventUri")
    return uri if isinstance(uri, str) and uri else None


def _ssl(client: RedfishClient, fingerprint: str | None, pin_store: PinStore | None) -> Any:
    if not client.base_url.startswith("https"):
        return None
    fp = fingerprint or (pin_store.get(client.base_url) if pin_store is not None else None)
    if fp:
        return aiohttp.Fingerprint(bytes.fromhex(normalize_fingerprint(fp).split(":", 1)[1]))
    return False  # no pin known yet: the poller's TOFU pins it on first contact; until then not verified


def parse_event_data(data: str) -> list[dict[str, Any]]:
    """The event records in one SSE ``data`` payload: an Event (``Events: [...]``) or a bare record."""
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    events = doc.get("Events")
    if isinstance(events, list):
        return [e for e in events if isinstance(e, dict)]
    return [doc]


async def consume_sse(client: RedfishClient, uri: str, on_event: Callable[[dict[str, Any]], None], *,
                      fingerprint: str | None = None, pin_store: PinStore | None = None,
                      read_timeout: float = 60.0) -> int:
    """Read the stream until it ends (or fails); returns how many records were delivered."""
    headers = {"Accept": "text/event-stream", **client._auth_headers()}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
    delivered = 0
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(client.base_url + uri, headers=headers, ssl=_ssl(client, fingerprint, pin_store)) as resp:
        if resp.status != 200:
            raise RedfishError(f"SSE stream answered {resp.status}", bmc=client.base_url, uri=uri,
                               status=resp.status)
        data: list[str] = []
        async for raw in resp.content:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    for rec in parse_event_data("\n".join(data)):
                        on_event(rec)
                        delivered += 1
                    data = []
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
    return delivered
