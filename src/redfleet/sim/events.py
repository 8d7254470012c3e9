"""Redfish events: push subscriptions (EventDestination) on every flavor, SSE where the real BMC has it.

A client POSTs an EventDestination to ``EventService/Subscriptions``; the simulator then POSTs Redfish ``Event``
payloads to its ``Destination`` with bounded timeouts and the retry count/interval the flavor advertises
(``DeliveryRetryAttempts``/``DeliveryRetryIntervalSeconds``, the interval divided by ``--time-scale`` and capped).
Destinations must be loopback (127.0.0.0/8, ::1, localhost): anything else is refused with 400, so a simulated fleet
can never send traffic off the machine. ``DELETE`` removes a subscription.

The SSE stream is served at the URI the flavor's EventService advertises (``ServerSentEventUri``: iDRAC
``/redfish/v1/SSE``, OpenBMC and the HGX host ``/redfish/v1/EventService/SSE``) and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import itertools
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson
from aiohttp import ClientSession, ClientTimeout, web

from redfleet.sim.errors import error_response

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import FleetDyn, NodeDyn

log = logging.getLogger("redfleet.sim.events")

Doc = dict[str, Any]

POST_TIMEOUT_S = 5.0
MAX_RETRY_WAIT_S = 5.0
MAX_INFLIGHT = 64
MAX_SUBSCRIPTIONS = 32  # per BMC; iDRAC allows 8, bmcweb 20
SSE_QUEUE = 256
SSE_KEEPALIVE_S = 15.0

_event_ids = itertools.count(1)


def _iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def loopback_destination(url: str) -> str | None:
    """None when ``url`` is an http(s) URL on this machine's loopback; else why not."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    if host == "localhost":
        return None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return f"{host} is not a loopback address (the simulator delivers events only to 127.0.0.0/8 or ::1)"
    if addr.is_loopback:
        return None
    return f"{host} is not a loopback address (the simulator delivers events only to 127.0.0.0/8 or ::1)"


def _bad_destination(dest: str, why: str) -> web.Response:
    msg = (f"The value '{dest}' for the property Destination is not a format that the property can accept: "
           f"{why}.")
    body = {"error": {"code": "Base.1.8.PropertyValueFormatError", "message": msg, "@Message.ExtendedInfo": [{
        "@odata.type": "#Message.v1_1_1.Message", "MessageId": "Base.1.8.PropertyValueFormatError",
        "Message": msg, "MessageArgs": [dest, "Destination"], "MessageSeverity": "Warning",
        "RelatedProperties": ["#/Destination"],
        "Resolution": "Give a Destination on this machine's loopback (127.0.0.0/8, ::1 or localhost)."}]}}
    return web.Response(status=400, body=orjson.dumps(body), content_type="application/json",
                        headers={"OData-Version": "4.0"})


class NodeSubscriptions:
    """The EventDestinations of one BMC (created on first POST)."""

    __slots__ = ("collection", "docs", "next_id")

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.docs: dict[str, Doc] = {}
        self.next_id = 1

    def paths(self) -> list[str]:
        return [d["@odata.id"] for d in self.docs.values()]

    def find(self, path: str) -> Doc | None:
        for d in self.docs.values():
            if d["@odata.id"].lower() == path.lower():
                return d
        return None


_FILTER_RE = re.compile(r"(\w+)\s+eq\s+'([^']*)'", re.I)


def _sse_filter(query: str) -> list[tuple[str, str]]:
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    f = params.get("$filter") or params.get("%24filter")
    if not f:
        return []
    return [(m.group(1), m.group(2)) for m in _FILTER_RE.finditer(unquote(f.replace("+", " ")))]


def _matches(record: Doc, filters: list[tuple[str, str]]) -> bool:
    """SSE ``$filter``: terms joined by ``or`` (DMTF DSP0266 §"Server-sent events"); any match passes."""
    if not filters:
        return True
    mid = str(record.get("MessageId") or "")
    origin = str((record.get("OriginOfCondition") or {}).get("@odata.id") or "")
    for prop, value in filters:
        p = prop.lower()
        if (p == "messageid" and mid == value) or (p == "registryprefix" and mid.split(".", 1)[0] == value):
            return True
        if (p == "originresource" and origin.startswith(value)) or (p == "eventformattype" and value == "Event"):
            return True
        if p == "resourcetype" and value.lower() in origin.lower():
            return True
        if p == "eventtype" and record.get("EventType") == value:
            return True
    return False


def _sub_accepts(sub: Doc, record: Doc) -> bool:
    mids = sub.get("MessageIds") or []
    mid = str(record.get("MessageId") or "")
    if mids and not any(mid == m or mid.endswith("." + m.rsplit(".", 1)[-1]) for m in mids):
        return False
    prefixes = sub.get("RegistryPrefixes") or []
    if prefixes and mid.split(".", 1)[0] not in prefixes:
        return False
    types = sub.get("EventTypes") or []
    if types and record.get("EventType") not in types and "Alert" not in types:
        return False
    origins = [o.get("@odata.id") if isinstance(o, dict) else o for o in (sub.get("OriginResources") or [])]
    origin = str((record.get("OriginOfCondition") or {}).get("@odata.id") or "")
    return not (origins and not any(origin.startswith(str(o)) for o in origins if o))


class EventHub:
    """Publishing, push delivery and SSE for the whole fleet."""

    def __init__(self, fleet_dyn: FleetDyn) -> None:
        self.fd = fleet_dyn
        self._session: ClientSession | None = None
        self._sem = asyncio.Semaphore(MAX_INFLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    # ---- payloads ------------------------------------------------------------------------------------------
    def record(self, nd: NodeDyn, message_id: str | None, message: str, severity: str, args: list[Any],
               origin: str | None, event_type: str) -> Doc:
        rec: Doc = {
            "EventType": event_type if nd.flv.ix.event_version < (1, 3, 0) else "Alert",
            "EventId": str(next(_event_ids)),
            "EventTimestamp": _iso(),
            "Severity": severity,
            "MessageSeverity": severity,
            "Message": message,
            "MessageId": message_id or "Base.1.0.Success",
            "MessageArgs": [str(a) for a in args],
        }
        if nd.flv.ix.event_version < (1, 3, 0):
            rec.pop("MessageSeverity")  # Event v1.0 had Severity only
        if origin:
            rec["OriginOfCondition"] = {"@odata.id": origin}
        return rec

    def payload(self, nd: NodeDyn, records: list[Doc], context: str | None) -> Doc:
        ver = "v1_7_0" if nd.flv.ix.event_version >= (1, 3, 0) else "v1_0_0"
        body: Doc = {
            "@odata.type": f"#Event.{ver}.Event",
            "Id": records[0]["EventId"] if records else "0",
            "Name": "Event Array",
            "Events": records,
        }
        if context is not None:
            body["Context"] = context
        return body

    def publish(self, nd: NodeDyn, message_id: str | None, message: str, severity: str, args: list[Any],
                origin: str | None, event_type: str = "Alert") -> None:
        if not nd.subs and not nd.sse:
            return
        rec = self.record(nd, message_id, message, severity, args, origin, event_type)
        if nd.sse:
            for q, filters in list(nd.sse):
                if _matches(rec, filters):
                    with contextlib.suppress(asyncio.QueueFull):
                        q.put_nowait(rec)
        if nd.subs:
            for sub in list(nd.subs.docs.values()):
                if _sub_accepts(sub, rec):
                    self._spawn(self._deliver(nd, sub, self.payload(nd, [rec], sub.get("Context"))))

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, nd: NodeDyn, sub: Doc, payload: Doc) -> None:
        ix = nd.flv.ix
        attempts = 1 + max(0, int(ix.delivery_retry_attempts))
        scale = float(nd.node.fleet.config.time_scale or 1.0)
        wait = min(MAX_RETRY_WAIT_S, float(ix.delivery_retry_interval) / scale)
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json"}
        for h in sub.get("HttpHeaders") or []:
            if isinstance(h, dict):
                headers.update({str(k): str(v) for k, v in h.items()})
        async with self._sem:
            if self._session is None or self._session.closed:
                self._session = ClientSession(timeout=ClientTimeout(total=POST_TIMEOUT_S))
            for attempt in range(attempts):
                if sub.get("@odata.id") not in (nd.subs.paths() if nd.subs else []):
                    return  # deleted meanwhile
                try:
                    async with self._session.post(sub["Destination"], data=body, headers=headers, ssl=False) as r:
                        await r.read()
                        if r.status < 300:
                            self.delivered += 1
                            return
                except (TimeoutError, OSError, Exception) as exc:  # connection refused, timeout, ...
                    log.debug("event to %s failed: %s", sub.get("Destination"), exc)
                if attempt + 1 < attempts:
                    await asyncio.sleep(wait)
            self.failed += 1

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- HTTP ----------------------------------------------------------------------------------------------
    def takes(self, nd: NodeDyn, method: str, path: str) -> bool:
        """Whether :meth:`handle` may answer ``method path``: the core sends every other plain GET down its fast
        path, which never calls ``handle``. Must cover everything ``handle`` answers (keep the two in step)."""
        if nd.faults and not (hasattr(nd.node, "refuse_sessions") and hasattr(nd.node, "bad_json")):
            return True  # the fallback testing faults act on any request
        ix = nd.flv.ix
        low = path.lower()
        if ix.sse_uri and low == ix.sse_uri.lower():
            return True
        coll = ix.subscriptions
        if coll is not None and (low == coll.lower() or low.startswith(coll.lower() + "/")):
            return True
        return low.endswith("/actions/eventservice.submittestevent")

    async def handle(self, nd: NodeDyn, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        ix = nd.flv.ix
        method = request.method
        low = path.lower()
        # testing faults that act on requests
        if nd.faults:
            r = self._testing_faults(nd, request, path)
            if r is not None:
                return r
        if ix.sse_uri and low == ix.sse_uri.lower() and method == "GET":
            return await self._sse(nd, request)
        coll = ix.subscriptions
        if coll is None:
            return None
        if low == coll.lower():
            if method == "POST":
                return await self._subscribe(nd, request)
            return None  # GET: the core renders the collection, the overlay lists our members
        if low.startswith(coll.lower() + "/"):
            doc = nd.subs.find(path) if nd.subs else None
            if doc is None:
                return error_response(404, "ResourceMissingAtURI", path)
            if method in ("GET", "HEAD"):
                return web.Response(body=b"" if method == "HEAD" else orjson.dumps(doc),
                                    content_type="application/json", headers={"OData-Version": "4.0"})
            if method == "DELETE":
                assert nd.subs is not None
                nd.subs.docs.pop(doc["Id"], None)
                return web.Response(status=204)
            if method == "PATCH":
                try:
                    body = await request.json()
                except Exception:
                    return error_response(400, "MalformedJSON")
                if not isinstance(body, dict):
                    return error_response(400, "MalformedJSON")
                for k in ("Context", "DeliveryRetryPolicy", "HttpHeaders"):
                    if k in body:
                        doc[k] = body[k]
                return web.Response(body=orjson.dumps(doc), content_type="application/json")
            return error_response(405, "OperationNotAllowed")
        if method == "POST" and low.endswith("/actions/eventservice.submittestevent") and ix.event_service and \
                low.startswith(ix.event_service.lower()):
            return await self._test_event(nd, request)
        return None

    def _testing_faults(self, nd: NodeDyn, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        # the core implements both when it has node.refuse_sessions / node.bad_json; this is the fallback
        ss = nd.node.facts.session_collection
        if hasattr(nd.node, "refuse_sessions") and hasattr(nd.node, "bad_json"):
            return None
        if request.method == "POST" and path.lower() == ss.lower() and nd.has("session-refuse"):
            return error_response(503, "SessionLimitExceeded", headers={"Retry-After": "30"})
        if request.method == "GET" and nd.has("bad-json"):
            f = nd.has("bad-json")
            assert f is not None
            frac = float(f.params.get("fraction", 1.0))
            if frac >= 1.0 or (time.monotonic_ns() % 1000) / 1000.0 < frac:
                canon = nd.node.resolve(path)
                out = nd.node.render_bytes(canon) if canon else None
                if out is not None and out[1].startswith("application/json"):
                    body = out[0]
                    cut = max(1, len(body) * 2 // 3)
                    return web.Response(body=body[:cut] + b',"', status=200, headers={
                        "Content-Type": out[1], "OData-Version": "4.0"})
        return None

    async def _subscribe(self, nd: NodeDyn, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await request.json()
        except Exception:
            return error_response(400, "MalformedJSON")
        if not isinstance(body, dict):
            return error_response(400, "MalformedJSON")
        dest = body.get("Destination")
        if not isinstance(dest, str) or not dest:
            return error_response(400, "CreateFailedMissingReqProperties", "Destination")
        why = loopback_destination(dest)
        if why is not None:
            return _bad_destination(dest, why)
        proto = body.get("Protocol", "Redfish")
        if proto != "Redfish":
            return error_response(400, "PropertyValueNotInList", str(proto), "Protocol")
        ix = nd.flv.ix
        if nd.subs is None:
            nd.subs = NodeSubscriptions(ix.subscriptions or "/redfish/v1/EventService/Subscriptions")
        subs: Any = nd.subs
        if len(subs.docs) >= MAX_SUBSCRIPTIONS:
            return error_response(503, "ServiceTemporarilyUnavailable", 60)
        sid = str(subs.next_id)
        subs.next_id += 1
        path = f"{subs.collection}/{sid}"
        doc: Doc = {
            "@odata.id": path,
            "@odata.type": "#EventDestination.v1_7_0.EventDestination",
            "Id": sid,
            "Name": "Event Subscription",
            "Destination": dest,
            "Context": body.get("Context", ""),
            "Protocol": "Redfish",
            "SubscriptionType": body.get("SubscriptionType", "RedfishEvent"),
            "EventFormatType": body.get("EventFormatType", "Event"),
            "DeliveryRetryPolicy": body.get("DeliveryRetryPolicy", "SuspendRetries"),
            "Status": {"State": "Enabled", "Health": "OK"},
        }
        for k in ("EventTypes", "RegistryPrefixes", "MessageIds", "ResourceTypes", "OriginResources", "HttpHeaders"):
            if isinstance(body.get(k), list):
                doc[k] = body[k]
        if ix.event_version < (1, 3, 0) and "EventTypes" not in doc:
            doc["EventTypes"] = ix.event_types or ["Alert"]
        subs.docs[sid] = doc
        out = {k: v for k, v in doc.items() if k != "HttpHeaders"}
        return web.Response(status=201, body=orjson.dumps(out), content_type="application/json",
                            headers={"Location": path, "OData-Version": "4.0"})

    async def _test_event(self, nd: NodeDyn, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await request.json()
        except Exception:
            body = {}
        if not isinstance(body, dict):
            body = {}
        rec = self.record(nd, str(body.get("MessageId") or "Base.1.0.Success"),
                          str(body.get("Message") or "Test event."), str(body.get("Severity") or "OK"),
                          list(body.get("MessageArgs") or []), body.get("OriginOfCondition") if isinstance(
                              body.get("OriginOfCondition"), str) else None, str(body.get("EventType") or "Alert"))
        if nd.sse:
            for q, _f in list(nd.sse):
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(rec)
        if nd.subs:
            for sub in list(nd.subs.docs.values()):
                self._spawn(self._deliver(nd, sub, self.payload(nd, [rec], sub.get("Context"))))
        return web.Response(status=204)

    async def _sse(self, nd: NodeDyn, request: web.BaseRequest) -> web.StreamResponse:
        filters = _sse_filter(request.query_string)
        q: asyncio.Queue[Doc] = asyncio.Queue(maxsize=SSE_QUEUE)
        if nd.sse is None:
            nd.sse = []
        entry = (q, filters)
        nd.sse.append(entry)
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "OData-Version": "4.0"})
        try:
            await resp.prepare(request)
            await resp.write(b": redfleet simulated BMC event stream\n\n")
            while True:
                try:
                    rec = await asyncio.wait_for(q.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if getattr(nd.node, "down", False):
                    break
                body = orjson.dumps(self.payload(nd, [rec], None))
                await resp.write(b"id: " + rec["EventId"].encode() + b"\ndata: " + body + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                nd.sse.remove(entry)
            if not nd.sse:
                nd.sse = None
        return resp
