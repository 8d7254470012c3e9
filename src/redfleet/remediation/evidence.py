"""The evidence bundle an RMA record carries when remediation gives up on a node.

```python
bundle = await collect_evidence("node-00009", reasons=[r.to_dict() for r in health.reasons], store=store,
                                hub=hub, workflow=wf)
text = evidence_json(bundle)          # what `redfleet remediation show --json` / the API export
```

What is in it (schema ``redfleet.rma-evidence/1``): the reasons, the suspect parts with their serials (matched
from the reasons' components against the latest stored inventory), the node's Xids and events, the latest value of
every time series serve holds for it, the inventory, its recent changes, the health history, the BMC's SEL and the
workflow. Each part is read on its own, bounded by ``timeout``: a part that fails or times out is left empty and
named in ``errors`` (``"sel: ..."``) — a vendor's return desk wants what could be gathered, not nothing.
"""

# ruff: noqa: ASYNC109  (the timeout bounds each part separately; asyncio.timeout would bound them all at once)
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from redfleet.redfish.fleet import NodeTarget
from redfleet.store import FleetStore

if TYPE_CHECKING:
    from redfleet.telemetry.hub import Hub

log = logging.getLogger("redfleet.remediation.evidence")

SCHEMA = "redfleet.rma-evidence/1"
EVENTS_LIMIT = 200
CHANGES_LIMIT = 100
HEALTH_LIMIT = 100

T = TypeVar("T")

# component kind in a health reason -> the inventory collection holding such parts
_COLLECTIONS = {"gpu": "gpus", "fan": "fans", "psu": "psus", "dimm": "memory", "drive": "drives", "nvme": "drives",
                "cpu": "cpus", "nic": "nics"}
_XID_ID = re.compile(r"^xid\D*(\d+)", re.IGNORECASE)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return None if value is None else str(value)


def _plain(obj: Any) -> Any:
    """JSON-ready: datetimes as ISO UTC, pydantic models and dataclass records as dicts."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, datetime):
        return _iso(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return _plain(dump(mode="json"))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(obj))
    return str(obj)


def evidence_json(bundle: dict[str, Any]) -> str:
    """The bundle as stable JSON: sorted keys, two-space indent, datetimes as ISO UTC."""
    return json.dumps(_plain(bundle), sort_keys=True, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------------------------------- parts


def _event_dict(e: Any) -> dict[str, Any]:
    return {"id": e.id, "at": _iso(e.at), "source": e.source, "severity": e.severity, "message_id": e.message_id,
            "message": e.message, "payload": _plain(e.payload)}


def xids_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events that are GPU Xids (``message_id`` ``Xid <n>`` or a payload of kind ``xid``), newest first."""
    out = []
    for e in events:
        raw = e.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        mid = str(e.get("message_id") or "")
        m = _XID_ID.match(mid)
        if not m and payload.get("kind") != "xid":
            continue
        code = payload.get("code")
        if code is None and m:
            code = int(m.group(1))
        out.append({"at": e.get("at"), "code": code, "gpu": payload.get("gpu"),
                    "pci_bus_id": payload.get("pci_bus_id"), "message": e.get("message"),
                    "source": e.get("source"), "event_id": e.get("id")})
    return out


def sensor_snapshot(series: Any, node: str) -> list[dict[str, Any]]:
    """The latest value of every series the hub holds for ``node``, sorted by metric, GPU, labels."""
    out = []
    for k in series.keys(node):
        latest = series.latest(node, k.metric, gpu=k.gpu, labels=k.labels_dict or None)
        if latest is None:
            continue
        ts, value = latest
        out.append({"metric": k.metric, "gpu": k.gpu, "labels": k.labels_dict, "value": value, "ts": _iso(ts)})
    out.sort(key=lambda s: (s["metric"], -1 if s["gpu"] is None else s["gpu"], sorted(s["labels"].items())))
    return out


def _norm(text: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text or "").lower())


def _norm_uuid(text: Any) -> str:
    t = str(text or "").lower()
    return _norm(t[4:] if t.startswith("gpu-") else t)


def _part(component: str, kind: str, item: dict[str, Any] | None, matched_by: str | None,
          ident: dict[str, Any] | None = None) -> dict[str, Any]:
    item = item or {}
    ident = ident or {}
    return {
        "component": component,
        "kind": kind,
        "serial": item.get("serial") or ident.get("serial"),
        "part_number": item.get("part_number"),
        "model": item.get("model") or ident.get("model") or item.get("memory_type"),
        "location": item.get("location"),
        "uri": item.get("source"),
        "matched_by": matched_by,
    }


def suspect_parts(reasons: list[dict[str, Any]], inventory: dict[str, Any] | None,
                  gpu_identities: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The parts the reasons point at, with serials from the inventory.

    ``gpu:<n>`` is an in-band GPU index: matched through the agent's identity of GPU ``n`` (UUID, serial, PCI bus)
    when known, else by position in the inventory (``matched_by: "position"``). Other components match an
    inventory item's id or name. A component that matches nothing is still listed (``matched_by: null``, no
    serial) so the operator sees what could not be identified; ``node``-level reasons list nothing."""
    inv = inventory or {}
    idents = {int(g["gpu"]): g for g in gpu_identities or [] if isinstance(g, dict)
              and str(g.get("gpu", "")).lstrip("-").isdigit()}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in reasons:
        comp = str(r.get("component") or "") if isinstance(r, dict) else ""
        if not comp or ":" not in comp or comp in seen:
            continue  # "node", "os", "bmc", "gpu" (no index): node-level
        seen.add(comp)
        kind, _, key = comp.partition(":")
        coll = _COLLECTIONS.get(kind)
        if coll is None:
            continue
        items = [i for i in inv.get(coll) or [] if isinstance(i, dict)]
        kind_out = "drive" if kind == "nvme" else kind
        if kind == "gpu":
            out.append(_match_gpu(comp, key, items, idents))
            continue
        item = _match_item(key, items)
        out.append(_part(comp, kind_out, item, "id" if item else None))
    return out


def _match_item(key: str, items: list[dict[str, Any]]) -> dict[str, Any] | None:
    want = _norm(key)
    if not want:
        return None
    for field in ("id", "name", "location", "serial"):
        for i in items:
            if _norm(i.get(field)) == want:
                return i
    return None


def _match_gpu(comp: str, key: str, items: list[dict[str, Any]],
               idents: dict[int, dict[str, Any]]) -> dict[str, Any]:
    if key.startswith("pci:"):
        bus = _norm(key[4:])[-6:]
        for known in idents.values():
            if bus and _norm(known.get("pci_bus_id"))[-6:] == bus:
                key = str(known["gpu"])
                break
        else:
            return _part(comp, "gpu", None, None)
    if not key.isdigit():
        item = _match_item(key, items)
        return _part(comp, "gpu", item, "id" if item else None)
    index = int(key)
    ident: dict[str, Any] | None = idents.get(index)
    if ident:
        for field, norm in (("uuid", _norm_uuid), ("serial", _norm)):
            want = norm(ident.get(field))
            if not want:
                continue
            for i in items:
                if norm(i.get(field)) == want:
                    return _part(comp, "gpu", i, field, ident)
    if 0 <= index < len(items):
        return _part(comp, "gpu", items[index], "position", ident)
    return _part(comp, "gpu", None, "in-band" if ident and ident.get("serial") else None, ident)


# --------------------------------------------------------------------------------------------------- the BMC


def _target_from_store(store: FleetStore, node: str) -> NodeTarget | None:
    from redfleet.store.targets import targets_from_store

    found = targets_from_store(store, [node])
    return found[0] if found else None


async def read_node_sel(target: NodeTarget, *, pin_store: Any = None, tls_mode: str = "pin", limit: int = 200,
                        timeout: float = 30.0) -> list[dict[str, Any]]:
    """The SEL of one node over Redfish, or IPMI for ``ipmi://`` BMCs, newest first."""
    if target.is_ipmi:
        from redfleet.ipmi import IpmiClient

        async with IpmiClient.from_url(target.url, target.username, target.password, timeout=timeout,
                                       name=target.name) as ic:
            return await ic.sel(limit)
    from redfleet.redfish.client import RedfishClient, RetryPolicy, Timeouts
    from redfleet.redfish.logs import read_sel
    from redfleet.redfish.tls import TLSPolicy

    tls = TLSPolicy(tls_mode, pin_store=pin_store, fingerprint=target.fingerprint)  # type: ignore[arg-type]
    client = RedfishClient(target.url, target.username, target.password, tls=tls, timeouts=Timeouts.uniform(timeout),
                           retry=RetryPolicy(attempts=2, backoff_base=0.2, backoff_max=1.0,
                                             retry_after_max=min(timeout, 10.0)), name=target.name)
    async with client:
        return await read_sel(client, limit=limit)


# --------------------------------------------------------------------------------------------------- the bundle


async def collect_evidence(
    node: str,
    *,
    reasons: list[dict[str, Any]],
    store: FleetStore | None = None,
    hub: Hub | None = None,
    target: NodeTarget | None = None,
    workflow: dict[str, Any] | None = None,
    pin_store: Any = None,
    tls_mode: str = "pin",
    sel_limit: int = 200,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Gather the evidence bundle for ``node`` (see the module doc). Never raises: what fails is in ``errors``.

    ``hub`` is serve's :class:`redfleet.telemetry.hub.Hub` (sensor series, the agent's GPU identities);
    ``target`` the node's BMC (default: from the store, with its stored credentials and pins)."""
    errors: list[str] = []

    async def part(name: str, fn: Callable[[], Awaitable[T]], default: T) -> T:
        try:
            async with asyncio.timeout(timeout):
                return await fn()
        except TimeoutError:
            errors.append(f"{name}: no answer within {timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is one part's, never the bundle's
            errors.append(f"{name}: {type(exc).__name__}: {exc}" if not str(exc) else f"{name}: {exc}")
            log.debug("evidence for %s: %s failed", node, name, exc_info=True)
        return default

    def thread(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
        async def run() -> T:
            return await asyncio.to_thread(fn)
        return run

    collected_at = _iso(datetime.now(UTC))
    none: dict[str, Any] | None = None
    empty: list[dict[str, Any]] = []

    async def no_store() -> None:
        raise RuntimeError("no fleet store given")

    if store is not None:
        st = store

        def events() -> list[dict[str, Any]]:
            return [_event_dict(e) for e in st.events(node, limit=EVENTS_LIMIT)]

        def changes() -> list[dict[str, Any]]:
            return [_plain(c.to_dict()) for c in st.history(node, limit=CHANGES_LIMIT)]

        def health() -> list[dict[str, Any]]:
            from redfleet.store.health import health_history

            return [_plain(h.to_dict()) for h in st.transaction(
                lambda s: health_history(s, node, limit=HEALTH_LIMIT), write=False)]

        inv_t = part("inventory", thread(lambda: st.latest_inventory(node)), none)
        ev_t = part("events", thread(events), list(empty))
        ch_t = part("inventory_changes", thread(changes), list(empty))
        hh_t = part("health_history", thread(health), list(empty))
    else:
        inv_t = part("inventory", no_store, none)
        ev_t = part("events", no_store, list(empty))  # type: ignore[arg-type]
        ch_t = part("inventory_changes", no_store, list(empty))  # type: ignore[arg-type]
        hh_t = part("health_history", no_store, list(empty))  # type: ignore[arg-type]

    async def sel() -> list[dict[str, Any]]:
        tgt = target
        if tgt is None and store is not None:
            tgt = await asyncio.to_thread(_target_from_store, store, node)
        if tgt is None:
            raise RuntimeError("no BMC address for the node (no target given, none in the store)")
        pins = pin_store
        if pins is None and store is not None and tls_mode == "pin":
            pins = store.pin_store()
        return await read_node_sel(tgt, pin_store=pins, tls_mode=tls_mode, limit=sel_limit, timeout=timeout)

    inventory, events_l, changes_l, health_l, sel_l = await asyncio.gather(
        inv_t, ev_t, ch_t, hh_t, part("sel", sel, list(empty)))

    sensors: list[dict[str, Any]] = []
    gpu_identities: list[dict[str, Any]] = []
    if hub is not None:
        series = getattr(hub, "series", None)
        if series is not None:
            try:
                sensors = sensor_snapshot(series, node)
            except Exception as exc:
                errors.append(f"sensors: {exc}")
        status = getattr(hub, "nodes", {}).get(node)
        gpu_identities = list(getattr(status, "gpus", None) or [])
    else:
        errors.append("sensors: no telemetry hub given")

    reasons_plain = [_plain(r) for r in reasons or []]
    try:
        parts = suspect_parts([r for r in reasons_plain if isinstance(r, dict)], inventory, gpu_identities)
    except Exception as exc:
        parts = []
        errors.append(f"suspect_parts: {exc}")

    return {
        "schema": SCHEMA,
        "node": node,
        "collected_at": collected_at,
        "reasons": reasons_plain,
        "suspect_parts": parts,
        "xids": xids_from_events(events_l),
        "events": events_l,
        "sensors": sensors,
        "inventory": _plain(inventory),
        "inventory_changes": changes_l,
        "health_history": health_l,
        "sel": sel_l,
        "workflow": _plain(workflow),
        "errors": errors,
    }
