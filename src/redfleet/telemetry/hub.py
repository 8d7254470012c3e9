"""The heart of ``redfleet serve``: one place every observation goes through (agent batches, BMC sensor polls,
BMC events, reachability), into the time series and the health engine; health changes and events leave it for
the database in batches, off the request path.

Everything here runs on the event loop's thread (no locks); the database is written by :class:`Persister` from
a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from redfleet.model.ingest import IngestBatch, Sample
from redfleet.model.telemetry import SensorReadings
from redfleet.store import FleetStore

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.telemetry.columns import Columns

log = logging.getLogger(__name__)

HEALTH_STATES = ("healthy", "degraded", "unhealthy", "unknown")
_SEVERITY = {"critical": "Critical", "warning": "Warning", "ok": "OK", "info": "OK"}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _jsonable(obj: Any) -> Any:
    """Reasons and health objects of the engine as plain JSON (pydantic models, dataclasses, dicts)."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_jsonable(v) for v in obj]
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _jsonable(to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(obj))
    if hasattr(obj, "value") and type(obj).__module__ != "builtins":  # enums
        return _jsonable(obj.value)
    return str(obj)


def health_json(h: Any) -> dict[str, Any]:
    """A NodeHealth as the API shows it: ``{state, reasons: [...], components: {...}}``."""
    if h is None:
        return {"state": "unknown", "reasons": [], "components": {}}
    data = _jsonable(h)
    if not isinstance(data, dict):
        return {"state": str(data), "reasons": [], "components": {}}
    state = str(data.get("state") or "unknown")
    return {"state": state if state in HEALTH_STATES else "unknown", "reasons": list(data.get("reasons") or []),
            "components": dict(data.get("components") or {}),
            **{k: v for k, v in data.items() if k not in ("state", "reasons", "components")}}


@dataclass
class NodeStatus:
    """What serve knows about a node besides its series: reachability, agent, last poll results."""

    name: str
    bmc_url: str | None = None
    bmc_ok: bool | None = None
    bmc_error: str | None = None
    bmc_seen: float | None = None  # last successful BMC read
    agent_seen: float | None = None  # last ingest batch
    os_state: str | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    last_sensors_at: float | None = None
    health_since: float | None = None
    power_state: str | None = None  # host power as the BMC last said
    boot_at: float | None = None  # when serve last saw the host boot (receipt time; None: not since serve started)
    agent_uptime: float | None = None
    gpus_seen: Any = None  # the GpuIdentity list of the last batch (the object: see Hub.ingest)
    gpus_expected: int | None = None
    gpus_until: float = 0.0


class Hub:
    """Observations in, health out. ``engine`` is a :class:`redfleet.health.HealthEngine` (or anything with its
    interface), ``series`` a :class:`redfleet.telemetry.series.SeriesStore`."""

    def __init__(self, store: FleetStore | None, series: Any, engine: Any, *, clock: Callable[[], float] = time.time,
                 persist: bool = True) -> None:
        self.store = store
        self.series = series
        self.engine = engine
        self.clock = clock
        self.nodes: dict[str, NodeStatus] = {}
        self.persister = Persister(store) if (store is not None and persist) else None
        # counters for /metrics and the benchmark
        self.samples_total = 0
        self.batches_total = 0
        self.events_total = 0
        self.changes_total = 0
        self.evaluations = 0
        self.evaluate_seconds = 0.0
        self.recent_changes: deque[dict[str, Any]] = deque(maxlen=1000)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # told of each health change (tests, bench)

    # -- node registry

    def add_node(self, name: str, bmc_url: str | None = None) -> NodeStatus:
        st = self.nodes.get(name)
        if st is None:
            st = self.nodes[name] = NodeStatus(name, bmc_url)
        elif bmc_url:
            st.bmc_url = bmc_url
        return st

    def health(self, name: str) -> dict[str, Any]:
        try:
            return health_json(self.engine.node_health(name))
        except KeyError:
            return health_json(None)

    # -- in-band

    def ingest(self, batch: IngestBatch, now: float | None = None, cols: Columns | None = None) -> tuple[int, int]:
        """One agent batch; ``cols``: its per-GPU values in columns (the columnar encoding), besides
        ``batch.samples``. Returns (values accepted, events)."""
        now = self.clock() if now is None else now
        st = self.add_node(batch.node)
        st.agent_seen = now
        # A boot is seen as a "booting" report or the uptime going backwards; stamped with the receipt time (an
        # agent's clock, or a simulator's scaled one, may be off; remediation only asks "booted after X?").
        if batch.os_state == "booting" and st.os_state != "booting":
            st.boot_at = now
        elif batch.uptime_s is not None:
            if st.agent_uptime is not None and batch.uptime_s + 5.0 < st.agent_uptime:
                st.boot_at = now
            st.agent_uptime = batch.uptime_s
        st.os_state = batch.os_state
        samples = batch.samples
        eng = self.engine
        # The same GPU list as last time (the decoder hands back the very list when the agent's did not change,
        # see redfleet.api.ingest): nothing to redo.
        same_gpus = batch.gpus is st.gpus_seen and batch.gpus_expected == st.gpus_expected and now < st.gpus_until
        if batch.gpus and not same_gpus:
            st.gpus = [g.model_dump() for g in batch.gpus]
        if not same_gpus:  # told again once a minute all the same (an engine that forgot the node learns again)
            st.gpus_seen, st.gpus_expected, st.gpus_until = batch.gpus, batch.gpus_expected, now + 60.0
        if (batch.gpus or batch.gpus_expected is not None) and not same_gpus and hasattr(eng, "observe_gpus"):
            eng.observe_gpus(batch.node, batch.gpus, batch.gpus_expected, now)
        if samples:
            self.series.add_many(batch.node, samples)
            eng.observe_samples(batch.node, samples, now)
        n_cols = 0
        if cols is not None and cols.count:
            n_cols = cols.count
            if hasattr(self.series, "add_columns"):
                self.series.add_columns(batch.node, cols)
            else:
                self.series.add_many(batch.node, cols.samples())
            if hasattr(eng, "observe_columns"):
                eng.observe_columns(batch.node, cols, now)
            else:
                eng.observe_samples(batch.node, cols.samples(), now)
        if batch.nvme and hasattr(eng, "observe_nvme") and \
                not any(x.metric.startswith("REDFLEET_NVME_") for x in samples):
            eng.observe_nvme(batch.node, batch.nvme, now)
        # the heartbeat at receipt time (an agent's clock may be off)
        if hasattr(eng, "observe_batch"):
            eng.observe_agent(batch.node, batch.os_state, now, batch.uptime_s)
        else:
            eng.observe_agent(batch.node, batch.os_state, now)
        for ev in batch.events:
            self.engine.observe_event(batch.node, ev)
        if batch.events and self.persister is not None:
            self.persister.events.extend(
                (batch.node, _utc(ev.ts), "agent", "Warning" if ev.kind == "xid" else "OK",
                 f"Xid {ev.code}" if ev.code is not None else None, ev.raw or ev.message or f"{ev.kind} event",
                 ev.model_dump(mode="json"))
                for ev in batch.events)
        self.samples_total += len(samples) + n_cols
        self.events_total += len(batch.events)
        self.batches_total += 1
        return len(samples) + n_cols, len(batch.events)

    # -- out-of-band

    def observe_sensors(self, node: str, readings: SensorReadings | Mapping[str, Any], now: float | None = None,
                        power_state: str | None = None) -> int:
        now = self.clock() if now is None else now
        st = self.add_node(node)
        st.last_sensors_at = now
        # a SensorReadings, or its dict (what a collector worker process sends: {"readings": [{field: value}]})
        if hasattr(self.engine, "observe_sensors"):  # the engine writes the series and judges sensor Health
            self.engine.observe_sensors(node, readings, now)
            if isinstance(readings, Mapping):
                n = sum(1 for r in readings["readings"] if r["value"] is not None)
            else:
                n = sum(1 for r in readings.readings if r.value is not None)
        else:
            rows: list[Any] = [SimpleNamespace(**r) for r in readings["readings"]] \
                if isinstance(readings, Mapping) else list(readings.readings)
            samples = [Sample.model_construct(metric=f"redfish_{r.kind}", value=float(r.value), ts=now, gpu=None,
                                              labels={"sensor": r.id, **({"context": r.context} if r.context else {})})
                       for r in rows if r.value is not None]
            if samples:
                self.series.add_many(node, samples)
                self.engine.observe_samples(node, samples, now)
            n = len(samples)
        self.samples_total += n
        self.observe_reachability(node, True, now, power_state=power_state)
        return n

    def observe_reachability(self, node: str, ok: bool, now: float | None = None, error: str | None = None,
                             power_state: str | None = None) -> None:
        now = self.clock() if now is None else now
        st = self.add_node(node)
        was = st.bmc_ok
        st.bmc_ok = ok
        if ok:
            st.bmc_seen = now
            st.bmc_error = None
        else:
            st.bmc_error = error
        if power_state is not None:
            st.power_state = power_state
            self.engine.observe_reachability(node, ok, now, error, power_state=power_state)
        else:
            self.engine.observe_reachability(node, ok, now, error)
        if self.persister is not None and was is not ok and (was is not None or not ok):  # real transitions
            self.persister.events.append(
                (node, _utc(now), "redfleet", "OK" if ok else "Critical", "BMC.Reachable" if ok else "BMC.Unreachable",
                 "BMC reachable again" if ok else f"BMC unreachable: {error or 'no answer'}", None))

    def observe_inventory(self, node: str, inventory: dict[str, Any], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.engine.observe_inventory(node, inventory, now)
        if self.persister is not None:
            self.persister.inventories.append((node, inventory, _utc(now)))

    def observe_bmc_event(self, node: str, event: dict[str, Any], source: str, now: float | None = None) -> None:
        """A Redfish event record (SSE or push) or SEL entry, as the BMC sent it."""
        now = self.clock() if now is None else now
        self.engine.observe_event(node, make_bmc_event(node, event, source, now))
        self.events_total += 1
        if self.persister is not None:
            sev = _SEVERITY.get(str(event.get("MessageSeverity") or event.get("Severity") or "OK").lower(), "OK")
            self.persister.events.append(
                (node, _utc(now), source, sev, event.get("MessageId"), str(event.get("Message") or "")[:4000],
                 event))

    # -- judging

    def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        now = self.clock() if now is None else now
        t0 = time.perf_counter()
        changes = self.engine.evaluate(now)
        self.evaluate_seconds += time.perf_counter() - t0
        self.evaluations += 1
        out = []
        for ch in changes or ():
            d = _jsonable(ch)
            node = str(d.get("node"))
            at = d.get("at")
            at_ts = float(at) if isinstance(at, int | float) else now
            old, new, reasons = str(d.get("old")), str(d.get("new")), list(d.get("reasons") or [])
            rec: dict[str, Any] = {"node": node, "old": old, "new": new, "reasons": reasons, "at": at_ts}
            st = self.nodes.get(node)
            if st is not None:
                st.health_since = at_ts
            out.append(rec)
            self.recent_changes.append(rec)
            if self.persister is not None:
                self.persister.changes.append((node, _utc(at_ts), old, new, reasons))
            for fn in self.listeners:
                fn(rec)
        self.changes_total += len(out)
        return out

    async def run_evaluator(self, interval: float = 0.25) -> None:
        """Evaluate on a short tick (health changes become visible within ``interval`` of the observation)."""
        while True:
            try:
                self.evaluate()
            except Exception:
                log.exception("health evaluation failed")
            await asyncio.sleep(interval)


def make_bmc_event(node: str, event: dict[str, Any], source: str, now: float) -> Any:
    """The engine's BmcEvent from a Redfish event record (push or SSE)."""
    from redfleet.health.model import BmcEvent

    origin = event.get("OriginOfCondition")
    if isinstance(origin, dict):
        origin = origin.get("@odata.id")
    sev = event.get("MessageSeverity") or event.get("Severity")
    return BmcEvent(ts=now, message_id=str(event["MessageId"]) if event.get("MessageId") else None,
                    message=str(event.get("Message") or ""), severity=str(sev) if sev else None,
                    origin=str(origin) if origin else None,
                    source={"redfish-sse": "sse", "redfish-push": "redfish-event"}.get(source, source))


class Persister:
    """Batches health changes, events and inventories into the database from a worker thread, every ``interval``
    seconds (one transaction per batch), so the loop never waits on the database."""

    def __init__(self, store: FleetStore, interval: float = 0.5) -> None:
        self.store = store
        self.interval = interval
        self.changes: list[tuple[str, datetime, str, str, list[dict[str, Any]]]] = []
        self.events: list[tuple[str | None, datetime, str, str, str | None, str, Any]] = []
        self.inventories: list[tuple[str, dict[str, Any], datetime]] = []
        self.written = {"changes": 0, "events": 0, "inventories": 0}
        self.errors = 0
        self._node_ids: dict[str, int] = {}

    def pending(self) -> bool:
        return bool(self.changes or self.events or self.inventories)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        if not self.pending():
            return
        changes, self.changes = self.changes, []
        events, self.events = self.events, []
        inventories, self.inventories = self.inventories, []
        try:
            await asyncio.to_thread(self._write, changes, events, inventories)
        except Exception:
            self.errors += 1
            log.exception("writing %d health changes / %d events to the database failed", len(changes), len(events))

    def _write(self, changes: list[Any], events: list[Any], inventories: list[Any]) -> None:
        from sqlalchemy import select

        from redfleet.store.health import add_health_changes
        from redfleet.store.models import Event, Node

        def run(session: Any) -> None:
            if changes:
                add_health_changes(session, changes)
            if events:
                missing = {e[0] for e in events if e[0] is not None and e[0] not in self._node_ids}
                if missing:
                    for name, nid in session.execute(select(Node.name, Node.id).where(Node.name.in_(missing))):
                        self._node_ids[name] = nid
                session.add_all(
                    Event(node_id=self._node_ids.get(n) if n else None, at=at, source=src, severity=sev,
                          message_id=(mid or None) and str(mid)[:200], message=msg, payload=_jsonable(payload))
                    for n, at, src, sev, mid, msg, payload in events)

        self.store.transaction(run)
        for node, inv, at in inventories:
            try:
                self.store.record_inventory(node, inv, at=at)
            except Exception as exc:
                log.warning("recording the inventory of %s failed: %s", node, exc)
        self.written["changes"] += len(changes)
        self.written["events"] += len(events)
        self.written["inventories"] += len(inventories)
