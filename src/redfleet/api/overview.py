"""``GET /api/v1/overview``: the whole fleet in one compact answer, for the dashboard's rack view.

``GET /api/v1/nodes`` builds a pydantic model per node with every reason (about 0.9 s at 10,000 nodes); the
overview needs far less per node, so this answer is column arrays (one list per field, index = node) plus counts,
built from the node cache and the health engine's state table, serialized with orjson and kept for
:data:`TTL` seconds: a wall of screens polling it costs one build per second, whatever their number.

Answer::

    {"generated_at": epoch s, "count": N,
     "names": [...], "rack": [...], "position": [...], "vendor": [...], "model": [...], "serial": [...],
     "state": [...],            # healthy | degraded | unhealthy | unknown
     "action": [...],           # the most drastic recommended action, or null
     "tags": [[...], ...], "lifecycle": [...],
     "counts": {"healthy": n, ...}, "breaker": {...} | null, "paused": bool | null}
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from redfleet.api.auth import require

TTL = 1.0
STATES = ("healthy", "degraded", "unhealthy", "unknown")

router = APIRouter(tags=["dashboard"])


def _states(hub: Any) -> dict[str, str]:
    """Every node's health state, the cheap way when the engine offers it (a dict of strings)."""
    states = getattr(hub.engine, "states", None)
    if callable(states):
        try:
            got = states()
            if isinstance(got, dict):
                return {str(k): str(v) for k, v in got.items()}
        except Exception:  # an engine without the table: fall back to one call per node below
            pass
    return {name: str(hub.health(name)["state"]) for name in hub.nodes}


def _action(hub: Any, name: str) -> str | None:
    node_health = getattr(hub.engine, "node_health", None)
    try:
        if callable(node_health):
            act = node_health(name).action
        else:
            act = hub.health(name).get("action")
    except Exception:  # a node the engine has not seen has no action
        return None
    return act if isinstance(act, str) else None


def _remediation(app_state: Any) -> tuple[dict[str, Any] | None, bool | None]:
    """The circuit breaker and pause flag when the remediation controller runs in this app (any shape it has)."""
    rem = getattr(app_state, "remediation", None)
    if rem is None:
        return None, None
    status = getattr(rem, "status", None)
    try:
        data = status() if callable(status) else status
    except Exception:  # the controller is optional: the overview must not fail because of it
        return None, None
    dump = getattr(data, "model_dump", None)
    if callable(dump):
        data = dump(mode="json")
    if not isinstance(data, dict):
        return None, None
    breaker = data.get("breaker")
    paused = data.get("paused")
    return (breaker if isinstance(breaker, dict) else None), (bool(paused) if paused is not None else None)


async def build_overview(app_state: Any) -> dict[str, Any]:
    """The overview document (uncached)."""
    hub = app_state.hub
    recs = await app_state.node_cache.get()
    names = list(recs) + [n for n in hub.nodes if n not in recs]
    states = _states(hub)
    cols: dict[str, list[Any]] = {k: [] for k in ("names", "rack", "position", "vendor", "model", "serial",
                                                  "state", "action", "tags", "lifecycle")}
    counts = dict.fromkeys(STATES, 0)
    for name in names:
        rec = recs.get(name)
        st = states.get(name, "unknown")
        if st not in counts:
            st = "unknown"
        counts[st] += 1
        cols["names"].append(name)
        cols["state"].append(st)
        # a healthy node recommends nothing: only the others cost a health lookup
        cols["action"].append(None if st in ("healthy", "unknown") else _action(hub, name))
        if rec is None:
            for k in ("rack", "position", "vendor", "model", "serial"):
                cols[k].append(None)
            cols["tags"].append([])
            cols["lifecycle"].append("active")
            continue
        cols["rack"].append(rec.rack)
        cols["position"].append(rec.position)
        cols["vendor"].append(rec.vendor)
        cols["model"].append(rec.model)
        cols["serial"].append(rec.serial)
        cols["tags"].append(list(rec.tags))
        cols["lifecycle"].append(rec.state)
    breaker, paused = _remediation(app_state)
    return {"generated_at": time.time(), "count": len(names), **cols, "counts": counts, "breaker": breaker,
            "paused": paused}


class _Cache:
    def __init__(self) -> None:
        self.body = b""
        self.at = -1e9


@router.get("/overview", summary="The fleet at a glance: compact column arrays for the dashboard (cached 1 s)",
            dependencies=[Depends(require("viewer"))])
async def overview(request: Request) -> Response:
    state = request.app.state
    cache: _Cache | None = getattr(state, "overview_cache", None)
    if cache is None:
        cache = state.overview_cache = _Cache()
    now = time.monotonic()
    if now - cache.at > TTL:
        cache.body = orjson.dumps(await build_overview(state))
        cache.at = now
    return Response(cache.body, media_type="application/json", headers={"Cache-Control": "private, max-age=1"})
