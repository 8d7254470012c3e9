"""The ``redfleet serve`` application: REST API (``/api/v1``), agent ingest, push-event receiver, ``/metrics``.

```python
app = create_app(store, targets=targets_from_fleet(fleet), dev_token="t0ken")
uvicorn.run(app, host="127.0.0.1", port=8080)
```
Background work starts with the app (lifespan): the health evaluator tick, the database persister and, when
``targets`` are given, the BMC collector. OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from redfleet.api.auth import Principal, TokenCache, require, require_by_method
from redfleet.api.ingest import FastIngest, IngestError, accept, decode
from redfleet.model.ingest import IngestBatch, IngestResult
from redfleet.redfish.fleet import NodeTarget
from redfleet.store import FleetStore, NodeRecord, NotFoundError
from redfleet.telemetry.columns import BINARY_TYPE as COLUMNS_BINARY_TYPE
from redfleet.telemetry.columns import CONTENT_TYPE as COLUMNS_CONTENT_TYPE
from redfleet.telemetry.hub import Hub, _jsonable

API = "/api/v1"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
HealthState = Literal["healthy", "degraded", "unhealthy", "unknown"]


# ------------------------------------------------------------------------------------------------------- models


class Health(BaseModel):
    state: HealthState
    reasons: list[dict[str, Any]] = Field(default_factory=list)
    action: str | None = None  # the most drastic recommended action of the reasons
    since: float | None = None  # when the node entered this state (epoch seconds)


class NodeOut(BaseModel):
    name: str
    bmc_url: str | None
    rack: str | None = None
    position: int | None = None
    tags: list[str] = Field(default_factory=list)
    vendor: str | None = None
    model: str | None = None
    lifecycle: str = "active"
    health: Health
    bmc_reachable: bool | None = None
    agent_last_seen: float | None = None
    os_state: str | None = None
    power_state: str | None = None


class NodeDetail(NodeOut):
    components: dict[str, Any] = Field(default_factory=dict)
    inventory: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    bmc_error: str | None = None
    gpus: list[dict[str, Any]] = Field(default_factory=list)


class HealthChangeOut(BaseModel):
    id: int
    node: str
    at: datetime
    old: str
    new: str
    reasons: list[dict[str, Any]]
    action: str | None = None


class EventOut(BaseModel):
    id: int
    node: str | None
    at: datetime
    source: str
    severity: str
    message_id: str | None
    message: str
    payload: dict[str, Any] | None = None


class TokenIn(BaseModel):
    name: str = Field(pattern=NAME_RE)
    role: Literal["viewer", "operator", "admin", "agent"]
    node: str | None = Field(default=None, pattern=NAME_RE)


class TokenOut(BaseModel):
    name: str
    role: str
    node: str | None
    created_at: datetime
    revoked: bool
    token: str | None = None  # only in the answer that created it


class AgentTokensIn(BaseModel):
    nodes: list[str] = Field(min_length=1, max_length=100_000)


class NodeStateIn(BaseModel):
    state: Literal["active", "maintenance", "drained", "retired"]
    reason: str | None = Field(default=None, max_length=2000)


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    reason: str | None
    result: str
    details: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------------------ helpers


class NodeCache:
    """The store's node records, re-read at most every ``ttl`` seconds (listing 10,000 nodes is a query)."""

    def __init__(self, store: FleetStore | None, ttl: float = 10.0) -> None:
        self.store = store
        self.ttl = ttl
        self.records: dict[str, NodeRecord] = {}
        self.loaded = 0.0

    async def get(self, force: bool = False) -> dict[str, NodeRecord]:
        if self.store is not None and (force or time.monotonic() - self.loaded > self.ttl):
            recs = await run_in_threadpool(self.store.nodes)
            self.records = {r.name: r for r in recs}
            self.loaded = time.monotonic()
        return self.records


def _node_out(hub: Hub, name: str, rec: NodeRecord | None, cls: type[NodeOut] = NodeOut, **extra: Any) -> Any:
    st = hub.nodes.get(name)
    h = hub.health(name)
    return cls(
        name=name, bmc_url=rec.bmc_url if rec else (st.bmc_url if st else None),
        rack=rec.rack if rec else None, position=rec.position if rec else None,
        tags=list(rec.tags) if rec else [], vendor=rec.vendor if rec else None, model=rec.model if rec else None,
        lifecycle=rec.state if rec else "active",
        health=Health(state=h["state"], reasons=[r if isinstance(r, dict) else {"message": str(r)}
                                                 for r in h["reasons"]],
                      action=h.get("action") if isinstance(h.get("action"), str) else None,
                      since=h.get("since") if isinstance(h.get("since"), int | float) else None),
        bmc_reachable=st.bmc_ok if st else None, agent_last_seen=st.agent_seen if st else None,
        os_state=st.os_state if st else None, power_state=st.power_state if st else None,
        **({"components": h.get("components") or {}} if cls is NodeDetail else {}), **extra)


def _change_out(x: Any) -> HealthChangeOut:
    actions = [r.get("action") for r in x.reasons if isinstance(r, dict) and r.get("action")]
    return HealthChangeOut(id=x.id, node=x.node, at=x.at, old=x.old, new=x.new, reasons=x.reasons,
                           action=_worst(actions) if actions else None)


def _worst(actions: list[Any]) -> str | None:
    try:
        from redfleet.health.model import action_rank
    except ImportError:
        return str(actions[0]) if actions else None
    return max((str(a) for a in actions), key=action_rank, default=None)


def _recent_metrics(hub: Hub, node: str, limit: int = 500) -> list[dict[str, Any]]:
    out = []
    for key in hub.series.keys(node)[:limit]:
        latest = hub.series.latest(node, key.metric, gpu=key.gpu, labels=key.labels_dict)
        if latest is None:
            continue
        out.append({"metric": key.metric, "gpu": key.gpu, "labels": key.labels_dict, "ts": latest[0],
                    "value": latest[1]})
    return out


# ------------------------------------------------------------------------------------------------------ the app


class ServeApp(FastAPI):
    """FastAPI with agent ingest answered ahead of its middleware and routing (:class:`FastIngest`)."""

    fast_ingest: FastIngest | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fast = self.fast_ingest
        if fast is not None and scope["type"] == "http" and fast.takes(scope):
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def default_engine(series: Any) -> Any:
    from redfleet.health import HealthEngine, load_rules

    return HealthEngine(rules=load_rules(None), series=series, clock=time.time)


def create_app(
    store: FleetStore | None,
    *,
    hub: Hub | None = None,
    engine: Any = None,
    series: Any = None,
    targets: list[NodeTarget] | None = None,
    intervals: Any = None,
    dev_token: str | None = None,
    metrics_auth: bool = False,
    receiver_url: str | None = None,
    push_secret: str | None = None,
    evaluate_interval: float = 0.25,
    persist_interval: float = 0.5,
    tls_mode: str = "pin",
    collector_concurrency: int = 256,
    collector_workers: int = 0,
    remediation: Any = None,
    wlm: Any = None,
    commands: Any = None,
    remediation_tick: float = 0.5,
) -> FastAPI:
    """The serve app. ``engine``/``series`` default to :class:`redfleet.health.HealthEngine` over a
    :class:`redfleet.telemetry.series.SeriesStore`; ``hub`` overrides both. ``remediation`` (a
    :class:`redfleet.remediation.policy.Policy`) turns automated remediation on, through ``wlm`` (a
    :class:`redfleet.remediation.wlm.WorkloadManager`; default: none, BMC-level only)."""
    if hub is None:
        if series is None:
            from redfleet.telemetry.series import SeriesStore

            series = SeriesStore()
        hub = Hub(store, series, engine if engine is not None else default_engine(series))
    if hub.persister is not None:
        hub.persister.interval = persist_interval
    push_secret = push_secret or secrets.token_hex(16)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run_evaluator(evaluate_interval), name="health-evaluator")]
        if hub.persister is not None:
            tasks.append(asyncio.create_task(hub.persister.run(), name="persister"))
        await app.state.node_cache.get(force=True)
        for rec in app.state.node_cache.records.values():
            hub.add_node(rec.name, rec.bmc_url)
        controller = None
        if remediation is not None and store is not None:
            from redfleet.remediation.controller import RemediationController
            from redfleet.remediation.wlm.none import NoneManager

            controller = RemediationController(store, hub, policy=remediation, wlm=wlm or NoneManager(),
                                               executor=app.state.executor, commands=app.state.commands,
                                               tick=remediation_tick, clock=hub.clock)
            app.state.remediation = controller
            await controller.start()
        collector: Any = None
        if targets:
            from redfleet.telemetry.collector.poller import Collector

            opts: dict[str, Any] = {"intervals": intervals, "tls_mode": tls_mode, "receiver_url": receiver_url,
                                    "push_secret": push_secret, "concurrency": collector_concurrency}
            pins = store.pin_store() if store is not None else None
            if collector_workers > 0:
                from redfleet.telemetry.collector.shards import ShardedCollector

                collector = ShardedCollector(hub, targets, workers=collector_workers, pin_store=pins, **opts)
            else:
                collector = Collector(hub, targets, pin_store=pins, **opts)
            app.state.collector = collector
            collector.start()
            if controller is not None:
                controller.refresh = collector.refresh
        try:
            yield
        finally:
            if collector is not None:
                await collector.stop()
            if controller is not None:
                await controller.stop()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if hub.persister is not None:
                with contextlib.suppress(Exception):
                    await hub.persister.flush()

    app = ServeApp(title="redfleet", version="1", lifespan=lifespan,
                  description="Fleet hardware manager: nodes, health, events, rules, in-band ingest. "
                              "Authorization: Bearer <token> (roles viewer < operator < admin; agent tokens ingest "
                              "for one node).")
    app.state.store = store
    app.state.hub = hub
    app.fast_ingest = FastIngest(app)
    app.state.collector = None
    app.state.tokens = TokenCache(store, dev_token)
    app.state.node_cache = NodeCache(store)
    app.state.push_secret = push_secret
    app.state.receiver_url = receiver_url
    app.state.remediation = None
    if commands is None:
        try:
            from redfleet.remediation.commands import CommandQueue
        except ImportError:
            commands = None
        else:
            # a GPU reset may take the agent up to 120 s: five deliveries 30 s apart outlast it
            commands = CommandQueue(max_deliveries=5)
    app.state.commands = commands
    app.state.executor = None
    if store is not None:
        from redfleet.remediation.executors import Executor

        def _targets() -> dict[str, NodeTarget]:
            from redfleet.store.targets import targets_from_store

            return {t.name: t for t in targets_from_store(store)}

        app.state.executor = Executor({t.name: t for t in targets or []}, pin_store=store.pin_store(),
                                      tls_mode=tls_mode, refresh=_targets)

    viewer = Depends(require("viewer"))
    operator = Depends(require("operator"))
    admin = Depends(require("admin"))

    r = APIRouter(prefix=API)

    async def record(name: str) -> NodeRecord | None:
        recs = await app.state.node_cache.get()
        rec = recs.get(name)
        if rec is None and name not in hub.nodes:
            recs = await app.state.node_cache.get(force=True)
            rec = recs.get(name)
            if rec is None:
                raise HTTPException(404, f"no node {name!r}")
        return rec

    @r.get("/nodes", response_model=list[NodeOut], dependencies=[viewer], summary="Every node with its health")
    async def list_nodes(
        state: HealthState | None = Query(None, description="only nodes in this health state"),
        rack: str | None = Query(None, max_length=200), tag: str | None = Query(None, max_length=200),
    ) -> list[NodeOut]:
        recs = await app.state.node_cache.get()
        names = list(recs) + [n for n in hub.nodes if n not in recs]
        out = []
        for name in names:
            rec = recs.get(name)
            if rack is not None and (rec is None or rec.rack != rack):
                continue
            if tag is not None and (rec is None or tag not in rec.tags):
                continue
            node = _node_out(hub, name, rec)
            if state is not None and node.health.state != state:
                continue
            out.append(node)
        return out

    @r.get("/nodes/{name}", response_model=NodeDetail, dependencies=[viewer],
           summary="One node: health with reasons and components, inventory, recent metrics")
    async def get_node(name: str = Path(max_length=200)) -> NodeDetail:
        rec = await record(name)
        inv = None
        if store is not None and rec is not None:
            inv = await run_in_threadpool(store.latest_inventory, name)
        st = hub.nodes.get(name)
        return _node_out(hub, name, rec, NodeDetail, inventory=inv, metrics=_recent_metrics(hub, name),
                         bmc_error=st.bmc_error if st else None, gpus=st.gpus if st else [])

    @r.get("/nodes/{name}/metrics", dependencies=[viewer], summary="Recent points of one metric of a node")
    async def node_metrics(name: str = Path(max_length=200), metric: str = Query(..., max_length=128),
                           seconds: float = Query(300.0, gt=0, le=86400), gpu: int | None = Query(None, ge=0, le=1024),
                           ) -> dict[str, Any]:
        await record(name)
        now = time.time()
        keys = [k for k in hub.series.keys(name) if k.metric == metric and (gpu is None or k.gpu == gpu)]
        return {"node": name, "metric": metric, "series": [
            {"gpu": k.gpu, "labels": k.labels_dict,
             "points": hub.series.window(name, metric, seconds, now, gpu=k.gpu, labels=k.labels_dict)}
            for k in keys]}

    @r.get("/nodes/{name}/health/history", response_model=list[HealthChangeOut], dependencies=[viewer],
           summary="The node's health changes, newest first")
    async def node_health_history(name: str = Path(max_length=200), limit: int = Query(100, ge=1, le=10000),
                                  ) -> list[HealthChangeOut]:
        await record(name)
        if store is None:
            return []
        from redfleet.store.health import health_history

        rows = await run_in_threadpool(store.transaction, lambda s: health_history(s, name, limit=limit), write=False)
        return [_change_out(x) for x in rows]

    @r.post("/nodes/{name}/state", response_model=NodeOut, summary="Set a node's lifecycle state (audited)")
    async def set_state(body: NodeStateIn, name: str = Path(max_length=200),
                        who: Principal = operator) -> NodeOut:
        if store is None:
            raise HTTPException(503, "no fleet store")
        try:
            rec = await run_in_threadpool(lambda: store.set_node_state(name, body.state, reason=body.reason,
                                                                       actor=f"api:{who.name}"))
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        await app.state.node_cache.get(force=True)
        return _node_out(hub, name, rec)

    @r.get("/events", response_model=list[EventOut], dependencies=[viewer], summary="Events, newest first")
    async def list_events(node: str | None = Query(None, max_length=200),
                          severity: Literal["OK", "Warning", "Critical"] | None = None,
                          limit: int = Query(100, ge=1, le=10000)) -> list[EventOut]:
        if store is None:
            return []
        try:
            evs = await run_in_threadpool(lambda: store.events(node, severity=severity, limit=limit))
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        return [EventOut(id=e.id, node=e.node, at=e.at, source=e.source, severity=e.severity,
                         message_id=e.message_id, message=e.message,
                         payload=e.payload if isinstance(e.payload, dict) else None) for e in evs]

    @r.get("/health/history", response_model=list[HealthChangeOut], dependencies=[viewer],
           summary="Health changes of the whole fleet, newest first")
    async def fleet_health_history(limit: int = Query(100, ge=1, le=10000)) -> list[HealthChangeOut]:
        if store is None:
            return []
        from redfleet.store.health import health_history

        rows = await run_in_threadpool(store.transaction, lambda s: health_history(s, None, limit=limit), write=False)
        return [_change_out(x) for x in rows]

    @r.get("/rules", dependencies=[viewer], summary="The health rules in force")
    async def list_rules() -> list[dict[str, Any]]:
        rules = getattr(hub.engine, "rules", []) or []
        out = []
        for rule in rules:
            d = _jsonable(rule)
            out.append(d if isinstance(d, dict) else {"rule": d})
        return out

    @r.get("/status", dependencies=[viewer], summary="What serve is doing: counters, collector, persister")
    async def status() -> dict[str, Any]:
        counts: dict[str, int] = {}
        for name in hub.nodes:
            s = hub.health(name)["state"]
            counts[s] = counts.get(s, 0) + 1
        coll = app.state.collector
        return {"nodes": len(hub.nodes), "health": counts, "samples_total": hub.samples_total,
                "batches_total": hub.batches_total, "events_total": hub.events_total,
                "health_changes_total": hub.changes_total,
                "collector": coll.summary() if coll is not None else None,
                "persisted": dict(hub.persister.written) if hub.persister is not None else None}

    ingest_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}},
        COLUMNS_CONTENT_TYPE: {"schema": {"type": "object"}},  # IngestBatch + columns/ts/values
        COLUMNS_BINARY_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}  # see redfleet.telemetry.columns

    @r.post("/ingest", response_model=IngestResult, openapi_extra=ingest_body,
            summary="An in-band agent's batch (per-node agent token)",
            responses={422: {"description": "not a valid IngestBatch"}})
    async def ingest(request: Request) -> Response:
        # Requests with a bearer token are answered by FastIngest before they get here (see redfleet.api.ingest);
        # this route serves the others (the dashboard's cookie) with the same decoding, checks and answer.
        from redfleet.api.auth import principal

        p = await principal(request)
        try:
            batch, cols = decode(await request.body(), request.headers.get("content-type"))
            answer = await accept(app, p, batch, cols)
        except IngestError as exc:
            if exc.status == 422:
                raise RequestValidationError(exc.detail) from None
            raise HTTPException(exc.status, exc.detail, headers=exc.headers or None) from None
        return Response(answer, media_type="application/json")

    @r.post("/agents/tokens", summary="Create agent tokens for nodes (admin; shown once)")
    async def agent_tokens(body: AgentTokensIn, who: Principal = admin) -> dict[str, str]:
        if store is None:
            raise HTTPException(503, "no fleet store")
        recs = await app.state.node_cache.get(force=True)
        unknown = [n for n in body.nodes if n not in recs]
        if unknown:
            raise HTTPException(404, f"not in the fleet: {', '.join(unknown[:10])}")
        from redfleet.store.tokens import create_token, new_token

        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")

        def run(session: Any) -> dict[str, str]:
            out = {}
            for n in dict.fromkeys(body.nodes):
                tok, _ = create_token(session, f"agent:{n}:{stamp}", "agent", node=n, token=new_token())
                out[n] = tok
            return out

        toks = await run_in_threadpool(store.transaction, run)
        await run_in_threadpool(lambda: store.audit("api.agent-tokens.create", None, actor=f"api:{who.name}",
                                                    details={"nodes": len(toks)}))
        return toks

    @r.get("/tokens", response_model=list[TokenOut], dependencies=[admin], summary="API tokens (no secrets)")
    async def list_tokens() -> list[TokenOut]:
        if store is None:
            return []
        from redfleet.store.tokens import list_tokens as lt

        infos = await run_in_threadpool(store.transaction, lt, write=False)
        return [TokenOut(name=i.name, role=i.role, node=i.node, created_at=i.created_at, revoked=i.revoked)
                for i in infos]

    @r.post("/tokens", response_model=TokenOut, status_code=201, summary="Create an API token (admin; shown once)")
    async def create_token_ep(body: TokenIn, who: Principal = admin) -> TokenOut:
        if store is None:
            raise HTTPException(503, "no fleet store")
        if body.role == "agent" and not body.node:
            raise HTTPException(422, "an agent token needs `node`")
        from sqlalchemy.exc import IntegrityError

        from redfleet.store.tokens import create_token

        try:
            tok, info = await run_in_threadpool(
                store.transaction, lambda s: create_token(s, body.name, body.role, node=body.node))
        except IntegrityError as exc:
            raise HTTPException(409, f"a token named {body.name!r} exists") from exc
        await run_in_threadpool(lambda: store.audit("api.token.create", body.name, actor=f"api:{who.name}",
                                                    details={"role": body.role, "node": body.node}))
        return TokenOut(name=info.name, role=info.role, node=info.node, created_at=info.created_at, revoked=False,
                        token=tok)

    @r.delete("/tokens/{name}", status_code=204, summary="Revoke an API token (admin)")
    async def revoke_token(name: str = Path(max_length=200), who: Principal = admin) -> Response:
        if store is None:
            raise HTTPException(503, "no fleet store")
        from redfleet.store.tokens import revoke

        ok = await run_in_threadpool(store.transaction, lambda s: revoke(s, name))
        if not ok:
            raise HTTPException(404, f"no live token {name!r}")
        app.state.tokens.forget()
        await run_in_threadpool(lambda: store.audit("api.token.revoke", name, actor=f"api:{who.name}"))
        return Response(status_code=204)

    @r.get("/audit", response_model=list[AuditOut], dependencies=[admin], summary="The audit log, newest first")
    async def audit(target: str | None = Query(None, max_length=300), limit: int = Query(100, ge=1, le=10000),
                    ) -> list[AuditOut]:
        if store is None:
            return []
        rows = await run_in_threadpool(lambda: store.audit_log(target=target, limit=limit))
        return [AuditOut(id=a.id, at=a.at, actor=a.actor, action=a.action, target=a.target, reason=a.reason,
                         result=a.result, details=a.details if isinstance(a.details, dict) else None) for a in rows]

    @r.post("/redfish/events/{node}", status_code=204, include_in_schema=True,
            summary="Receiver for Redfish push events (the subscription's Context authenticates)")
    async def redfish_event(node: str = Path(max_length=200), body: dict[str, Any] = Body(...)) -> Response:
        from redfleet.telemetry.collector.push import node_context
        from redfleet.telemetry.collector.sse import parse_event_data

        expected = node_context(app.state.push_secret, node)
        ctx = body.get("Context")
        if not isinstance(ctx, str) or not hmac.compare_digest(ctx.encode(), expected.encode()):
            raise HTTPException(403, "unknown subscription context")
        for rec in parse_event_data(json.dumps(body)):
            hub.observe_bmc_event(node, rec, "redfish-push")
        return Response(status_code=204)

    app.include_router(r)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            top = IngestBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps.update(top.pop("$defs", {}))
            comps["IngestBatch"] = top
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    try:
        from redfleet.api.ssd import router as ssd_router

        app.include_router(ssd_router, prefix=API, dependencies=[Depends(require_by_method())])
    except ImportError:  # the SSD area is optional
        pass
    # Other areas' routers: each module's ``router`` (paths relative to /api/v1; it checks roles itself through
    # ``redfleet.api.auth.require`` and reaches serve's state through ``request.app.state``).
    import importlib

    for mod in ("redfleet.api.remediation", "redfleet.api.profiles", "redfleet.api.overview"):
        try:
            app.include_router(importlib.import_module(mod).router, prefix=API)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    try:
        from redfleet.web import mount as mount_web  # the dashboard: HTML pages and static files
    except ImportError:
        pass
    else:
        mount_web(app)

    async def metrics_ep(request: Request) -> Response:
        """Prometheus exposition. ``?series=curated|all|none`` (default curated), ``?rack=R`` / ``?node=N``
        (repeatable) to scrape a big fleet's per-node series in slices."""
        if metrics_auth:
            await require("viewer")(request)
        from prometheus_client import CONTENT_TYPE_LATEST

        from redfleet.telemetry.metrics import SERIES_MODES, render

        q = request.query_params
        mode = q.get("series", "curated")
        if mode not in SERIES_MODES:
            raise HTTPException(400, f"series must be one of {', '.join(SERIES_MODES)}")
        only: set[str] | None = None
        if q.getlist("node") or q.getlist("rack"):
            only = set(q.getlist("node"))
            racks = set(q.getlist("rack"))
            if racks:
                recs = await app.state.node_cache.get()
                only |= {n for n, rec in recs.items() if rec.rack in racks}
        extra: tuple[Any, ...] = ()
        if app.state.remediation is not None:
            from redfleet.remediation.metrics import RemediationCollector

            extra = (RemediationCollector(app.state.remediation),)
        # on the loop: series not thread-safe
        body = render(hub, app.state.collector, series=mode, nodes=only, extra=extra)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics_ep, methods=["GET"], include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
