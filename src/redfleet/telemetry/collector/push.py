"""Redfish push subscriptions: redfleet creates an EventDestination on the BMC pointing at its own receiver
(``POST /api/v1/redfish/events/{node}``), checks it every ``renew_s`` seconds and recreates it when the BMC lost
it (BMC reset, firmware update, someone deleted it). The subscription's ``Context`` carries a per-node secret
that the receiver checks, so a stranger cannot feed events for a node."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

from redfleet.redfish import RedfishClient
from redfleet.redfish.errors import NotFound, RedfishError

log = logging.getLogger(__name__)


def node_context(secret: str, node: str) -> str:
    """The Context redfleet puts in a node's subscription (and the receiver expects back)."""
    return "redfleet:" + hmac.new(secret.encode(), node.encode(), hashlib.sha256).hexdigest()[:32]


def destination(receiver_url: str, node: str) -> str:
    return f"{receiver_url.rstrip('/')}/api/v1/redfish/events/{node}"


async def subscriptions_uri(client: RedfishClient) -> str | None:
    es = client.caps.services.get("EventService")
    if not es:
        return None
    doc = await client.get(es)
    subs = doc.get("Subscriptions")
    uri = subs.get("@odata.id") if isinstance(subs, dict) else None
    return uri if isinstance(uri, str) else None


async def ensure_subscription(client: RedfishClient, node: str, receiver_url: str, secret: str,
                              current: str | None) -> str | None:
    """The URI of a live subscription of ours: ``current`` when the BMC still has it, else an existing one with our
    destination and context, else a new one (a stale one of ours, from before a restart with another secret, is
    deleted first). None when the BMC has no EventService."""
    dest = destination(receiver_url, node)
    ctx = node_context(secret, node)
    if current:
        try:
            doc = await client.get(current, cache=False)
            if doc.get("Destination") == dest and doc.get("Context") in (ctx, None):
                return current
        except NotFound:
            pass
    coll = await subscriptions_uri(client)
    if coll is None:
        return None
    try:
        members = await client.get_members(coll, cache=False)
    except RedfishError:
        members = []
    for m in members:
        uri = m.get("@odata.id")
        if m.get("Destination") != dest or not uri:
            continue
        if m.get("Context") in (ctx, None):  # some BMCs do not echo Context back on GET
            return str(uri)
        try:
            await client.delete(str(uri))  # ours, but from an earlier run: events would be refused
        except RedfishError as exc:
            log.debug("%s: deleting stale subscription %s: %s", node, uri, exc)
    body: dict[str, Any] = {"Destination": dest, "Protocol": "Redfish", "Context": ctx}
    res = await client.post(coll, body)
    loc = res.headers.get("location") or res.headers.get("Location")
    if not loc and isinstance(res.body, dict):
        loc = res.body.get("@odata.id")
    if loc and "://" in loc:
        loc = "/" + loc.split("://", 1)[1].split("/", 1)[1]
    log.info("%s: event subscription %s -> %s", node, loc, dest)
    return loc


async def remove_subscription(client: RedfishClient, uri: str) -> None:
    """Unsubscribe (serve shutting down); a BMC that already lost it is fine."""
    try:
        await client.delete(uri)
    except RedfishError as exc:
        log.debug("unsubscribing %s: %s", uri, exc)


async def keep_subscription(client: RedfishClient, st: Any, receiver_url: str, secret: str, renew_s: float) -> None:
    """Keep ``st.subscription`` alive forever (returns when the BMC has no EventService)."""
    while True:
        sub = await ensure_subscription(client, st.target.name, receiver_url, secret, st.subscription)
        if sub is None:
            return
        if sub != st.subscription:
            st.subscriptions_made += 1
        st.subscription = sub
        await asyncio.sleep(renew_s)
