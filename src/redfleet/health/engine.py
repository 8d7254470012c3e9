"""The health engine: rules over metrics, events, reachability and inventory -> each node's health.

Incremental by design: ``observe_*`` update per-node state and mark a node *dirty* only when something that can
change its health happened (a condition started or stopped firing, an event, a reachability change); timers
(for-durations, holds, heartbeat deadlines) sit in a heap. ``evaluate(now)`` re-derives the reasons of the dirty
nodes and of the nodes whose timers are due, and returns the ``HealthChange`` list.

Typical use (what ``redfleet serve`` does)::

    engine = HealthEngine(rules=load_rules(None), series=series)
    engine.observe_batch(batch)                    # an IngestBatch: samples, Xid events, heartbeat, GPUs, NVMe
    engine.observe_reachability("n1", False, ts, error="timeout")   # each BMC poll
    engine.observe_sensors("n1", readings, ts)     # a SensorReadings (redfish_<kind> series + component health)
    engine.observe_event("n1", BmcEvent(...))      # Redfish event / SSE / SEL entry
    changes = engine.evaluate()                    # per batch and on a 1 s tick
    engine.node_health("n1")                       # NodeHealth(state, reasons, components, action)
"""

from __future__ import annotations

import heapq
import math
import operator
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from redfleet.health.model import (
    ACTION_RANK,
    CLASS_RANK,
    SEVERITY_RANK,
    BmcEvent,
    HealthChange,
    NodeHealth,
    Reason,
    action_rank,
    state_of,
)
from redfleet.health.rules import (
    BucketPolicy,
    ComponentHealthRule,
    Escalation,
    EventRule,
    MetricRule,
    NodeRule,
    XidRule,
    load_rules,
)
from redfleet.health.xid import (
    RECOVERY_NAMES,
    XidCatalog,
    default_catalog,
    link_of,
    norm_bus,
    nvlink_verdicts,
    parse_xid_line,
    recovery_action_of,
)
from redfleet.telemetry.series import KeyedSample, LabelsKey, SeriesStore, labels_key

INF = math.inf
NVME_FIELDS = {  # nvme-cli smart-log keys -> the agent's metric names (redfleet.agent.fields.NVME_METRICS)
    "critical_warning": "REDFLEET_NVME_CRITICAL_WARNING",
    "avail_spare": "REDFLEET_NVME_AVAIL_SPARE_PERCENT",
    "spare_thresh": "REDFLEET_NVME_SPARE_THRESHOLD_PERCENT",
    "percent_used": "REDFLEET_NVME_PERCENT_USED",
    "media_errors": "REDFLEET_NVME_MEDIA_ERRORS",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, "&": lambda v, m: (int(v) & int(m)) != 0,
}
XID_KEEP = 7 * 86400.0  # Xid occurrences older than this are forgotten
XID_MAX = 512  # ... and at most this many per node


def _fmt_dur(s: float) -> str:
    if s >= 86400 and s % 86400 == 0:
        return f"{s / 86400:g}d"
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g}h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g}m"
    return f"{s:g}s"


IGNORED_SENSOR_STATES = frozenset({"Disabled", "Absent", "StandbyOffline"})


class _Fmt(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _format(template: str | None, default: str, **kw: Any) -> str:
    if not template:
        return default
    try:
        return template.format_map(_Fmt(kw))
    except (ValueError, TypeError, IndexError, AttributeError):
        return default


def _bump(levels: dict[str, int], value: str) -> str:
    names = sorted(levels, key=levels.__getitem__)
    i = levels[value]
    return names[min(i + 1, len(names) - 1)]


# --- compiled rules --------------------------------------------------------------------------------------------


class _MetricRT:
    __slots__ = ("by_model", "cache", "clear", "clear_by_model", "ctype", "label_res", "op", "per", "ref", "rid",
                 "rule", "stateless", "static_thr", "value", "window")

    def __init__(self, rule: MetricRule) -> None:
        c = rule.condition
        self.rule = rule
        self.ctype = c.type
        self.op = _OPS[c.op] if c.type != "equals" else operator.eq
        self.value = c.value
        self.by_model = self._models(c.value_by_model)
        self.clear = c.clear_value
        self.clear_by_model = self._models(c.clear_by_model)
        self.window = c.window or 0.0
        self.per = c.per
        self.label_res = [(k, re.compile(v)) for k, v in rule.labels.items()]
        self.ref = c.value_metric
        self.rid = rule.id
        self.stateless = c.type in ("threshold", "equals")  # no state kept while the value is fine
        self.static_thr = c.value if self.by_model is None else None
        self.cache: dict[str | None, float] = {}

    @staticmethod
    def _models(d: dict[str, float] | None) -> list[tuple[str, float]] | None:
        if not d:
            return None
        return sorted(((k.lower(), v) for k, v in d.items()), key=lambda kv: -len(kv[0]))

    @staticmethod
    def _pick(table: list[tuple[str, float]] | None, fallback: float | None, model: str | None) -> float | None:
        if table is None:
            return fallback
        default = fallback
        m = (model or "").lower()
        for k, v in table:
            if k == "default":
                default = v
            elif m and k in m:
                return v
        return default

    def threshold(self, model: str | None, ref: float | None = None) -> float:
        if ref is not None:
            return ref
        if self.static_thr is not None:
            return self.static_thr
        t = self.cache.get(model)
        if t is None:
            v = self._pick(self.by_model, self.value, model)
            t = self.cache[model] = 0.0 if v is None else v
        return t

    def clear_threshold(self, model: str | None) -> float | None:
        return self._pick(self.clear_by_model, self.clear, model)

    def labels_match(self, labels: Mapping[str, str]) -> bool:
        """Each rule label's regex must match the sample's label in full; a missing label reads as "" (so
        ``{nvlink: ""}`` selects the per-GPU totals, not the per-link series)."""
        for k, rx in self.label_res:
            if not rx.fullmatch(labels.get(k, "")):
                return False
        return True


class _Cond:
    """One metric rule on one series."""

    __slots__ = ("active", "active_since", "comp", "false_since", "gpu", "incs", "labels", "last_ts", "measure",
                 "prev", "rt", "thr", "true_since", "value")

    def __init__(self, rt: _MetricRT, gpu: int | None, labels: Mapping[str, str], comp: str) -> None:
        self.rt = rt
        self.gpu = gpu
        self.labels = dict(labels)
        self.comp = comp
        self.true_since: float | None = None
        self.false_since: float | None = None
        self.active = False
        self.active_since = 0.0
        self.value = 0.0
        self.measure = 0.0
        self.thr = 0.0
        self.last_ts = -INF
        self.prev: float | None = None
        self.incs: deque[tuple[float, float]] | None = None


@dataclass(slots=True)
class _Xid:
    ts: float
    gpu: int | None
    comp: str
    code: int
    message: str


class _Node:
    __slots__ = (
        "agent_last",
        "bmc_error",
        "bmc_fail_since",
        "bmc_ok",
        "boot_ts",
        "bus_gpu",
        "colprev",
        "comp_health",
        "cond_rules",
        "conds",
        "dirty",
        "gpu_model",
        "gpus_expected",
        "gpus_idx_known",
        "gpus_present",
        "history",
        "hits",
        "hot",
        "name",
        "node_model",
        "os_state",
        "os_state_since",
        "power",
        "reasons",
        "recovery",
        "refs",
        "scheduled",
        "seen",
        "sensor_keys",
        "since",
        "state",
        "updated",
        "uptime",
        "xids",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        # BMC sensor (id, kind, context) -> (metric, labels, labels key): made once, every poll reads the same ones
        self.sensor_keys: dict[tuple[Any, str, str], tuple[str, dict[str, str], LabelsKey]] = {}
        self.bmc_ok: bool | None = None
        self.bmc_fail_since: float | None = None
        self.bmc_error: str | None = None
        self.power: str | None = None
        self.agent_last: float | None = None
        self.os_state: str | None = None
        self.os_state_since = 0.0
        self.uptime: float | None = None
        self.boot_ts = -INF
        self.gpu_model: dict[int, str] = {}
        self.node_model: str | None = None
        self.bus_gpu: dict[str, int] = {}
        self.gpus_expected: int | None = None
        self.gpus_present: set[int] | None = None
        self.gpus_idx_known = True
        self.conds: dict[tuple[str, int | None, LabelsKey], _Cond] = {}
        self.colprev: dict[Any, Any] = {}  # column layout -> the rule columns' values in the last row seen
        self.hot: tuple[Any, list[int]] | None = None  # (plan, its hot positions) until a condition may change
        self.cond_rules: dict[str, int] = {}  # rule id -> how many conds it has on this node
        self.xids: deque[_Xid] = deque(maxlen=XID_MAX)
        self.recovery: dict[int | None, tuple[int, float]] = {}
        self.refs: dict[tuple[str, int | None, LabelsKey], float] = {}
        self.hits: dict[tuple[str, str], tuple[list[float], str, dict[str, Any]]] = {}
        self.comp_health: dict[str, dict[str, tuple[str, str, str, float]]] = {}
        self.reasons: tuple[Reason, ...] = ()
        self.state = "unknown"
        self.since: float | None = None
        self.updated: float | None = None
        self.history: deque[HealthChange] = deque(maxlen=200)
        self.scheduled = INF
        self.seen = False  # heard from it in any way (samples, sensors, inventory, events)
        self.dirty = False

    def model_of(self, gpu: int | None) -> str | None:
        if gpu is not None and gpu in self.gpu_model:
            return self.gpu_model[gpu]
        return self.node_model


def _carry(prev: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's preceding values with NaN (not read) carried over from the row before: ``out[r]`` is what was
    last read before row ``r + 1``."""
    out = np.empty_like(rows)
    cur = prev.copy()
    for r in range(rows.shape[0]):
        np.copyto(cur, rows[r], where=rows[r] == rows[r])
        out[r] = cur
    return out


class _ColPlan:
    """What the metric rules read in one column layout. ``cols``: the columns some rule applies to (GPU fields
    carry no labels: a rule's label patterns must accept ""); ``col_of``: (rule id, GPU) -> position in ``cols``;
    ``always``: positions fed every row (absence timers, thresholds taken from other metrics, bit tests)."""

    __slots__ = ("always", "col_of", "cols", "gpus", "rts")

    def __init__(self, eng: HealthEngine, lay: Any) -> None:
        cols: list[int] = []
        self.rts: list[list[_MetricRT]] = []
        self.col_of: dict[tuple[str, int | None], int] = {}
        self.always: list[int] = []
        self.gpus: list[int | None] = []
        for c, (metric, gpu) in enumerate(zip(lay.metric_of, lay.gpu_of, strict=True)):
            rts = [rt for rt in eng._by_metric.get(metric, ()) if not rt.label_res or rt.labels_match({})]
            if not rts and metric not in eng._refs:
                continue
            i = len(cols)
            cols.append(c)
            self.gpus.append(gpu)
            self.rts.append(rts)
            for rt in rts:
                self.col_of[(rt.rid, gpu)] = i
            if metric in eng._refs or any(rt.ctype == "absent" or rt.ref or rt.rule.condition.op == "&"
                                          for rt in rts):
                self.always.append(i)
        self.cols = np.asarray(cols, dtype=np.intp)

    def wants(self, n: _Node, i: int, value: float) -> bool:
        """A value that moved: does a rule need to see it? Counters always (their deltas), gauges when beyond a
        threshold (a gauge back within it has a condition, which sees every sample anyway)."""
        if value != value:
            return False
        for rt in self.rts[i]:
            if not rt.stateless or rt.op(value, rt.threshold(n.model_of(self.gpus[i]))):
                return True
        return False


# --- the engine ------------------------------------------------------------------------------------------------

INVENTORY_PARTS = {"fans": "fan", "psus": "psu", "memory": "dimm", "drives": "drive", "gpus": "gpu", "cpus": "cpu",
                   "nics": "nic"}  # inventory list -> component kind


def inventory_problems(inventory: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Component (``gpu:GPU_SXM_3``) -> (inventory list, Health, name) for every inventory item the BMC reports
    Warning or Critical; a GPU that is Absent counts as Critical."""
    out: dict[str, tuple[str, str, str]] = {}
    for coll, kind in INVENTORY_PARTS.items():
        for item in inventory.get(coll) or []:
            if not isinstance(item, Mapping):
                continue
            health = item.get("health")
            if coll == "gpus" and str(item.get("state") or "") == "Absent":
                health = "Critical"
            if health in ("Warning", "Critical"):
                out[f"{kind}:{item.get('id') or item.get('name')}"] = (coll, str(health),
                                                                       str(item.get("name") or item.get("id")))
    return out



class HealthEngine:
    def __init__(self, rules: Iterable[Any] | None = None, series: SeriesStore | None = None,
                 clock: Callable[[], float] = time.time, catalog: XidCatalog | None = None) -> None:
        self.rules: list[Any] = list(rules) if rules is not None else load_rules(None)
        self.series = series
        self.clock = clock
        self.catalog = catalog or default_catalog()
        self._by_metric: dict[str, list[_MetricRT]] = {}
        self._refs: set[str] = set()
        self._event_rules: list[EventRule] = []
        self._xid_event_rules = False
        self._xid: XidRule | None = None
        self._node_rules: dict[str, NodeRule] = {}
        self._comp_rules: list[ComponentHealthRule] = []
        for r in self.rules:
            if isinstance(r, MetricRule):
                self._by_metric.setdefault(r.metric, []).append(_MetricRT(r))
                if r.condition.value_metric:
                    self._refs.add(r.condition.value_metric)
            elif isinstance(r, EventRule):
                self._event_rules.append(r)
                self._xid_event_rules = self._xid_event_rules or r.match.codes is not None
            elif isinstance(r, XidRule):
                self._xid = r
            elif isinstance(r, NodeRule):
                self._node_rules[r.condition.type] = r
            elif isinstance(r, ComponentHealthRule):
                self._comp_rules.append(r)
        self._nodes: dict[str, _Node] = {}
        self._plans: dict[Any, _ColPlan] = {}  # column layout -> which columns the rules read
        self._dirty: set[str] = set()
        self._label_matches: dict[tuple[str, LabelsKey], bool] = {}  # (metric rule, labels key) -> labels_match
        self._heap: list[tuple[float, str]] = []
        self.evaluated_last = 0  # nodes re-derived by the last evaluate() (incrementality, benchmarks)
        self.evaluated_total = 0

    # --- plumbing -----------------------------------------------------------------------------------------------
    def _node(self, name: str) -> _Node:
        n = self._nodes.get(name)
        if n is None:
            n = self._nodes[name] = _Node(name)
            self._mark(n)
        return n

    def _mark(self, n: _Node) -> None:
        if not n.dirty:
            n.dirty = True
            self._dirty.add(n.name)

    def _schedule(self, n: _Node, due: float) -> None:
        if due < n.scheduled:
            n.scheduled = due
            heapq.heappush(self._heap, (due, n.name))

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._dirty.discard(node)

    # --- metrics ------------------------------------------------------------------------------------------------
    def observe_samples(self, node: str, samples: Iterable[Any], now: float | None = None) -> None:
        """Let the metric rules see new samples (``Sample`` or anything with metric/value/ts/gpu/labels). The
        caller writes them to the series store itself (or uses ``observe_batch``)."""
        by_metric = self._by_metric
        n = self._nodes.get(node) or self._node(node)
        n.hot = None  # conditions may start or stop being pending (see _hot)
        if not n.seen:
            n.seen = True
            self._mark(n)
        conds = n.conds
        if self._refs:  # thresholds taken from other metrics (NVMe spare threshold): those first
            samples = list(samples)
            refs = self._refs
            for s in samples:
                if s.metric in refs:
                    n.refs[(s.metric, s.gpu, labels_key(s.labels))] = float(s.value)
        with_state = n.cond_rules
        gpu_model, node_model = n.gpu_model, n.node_model
        matches = self._label_matches
        for s in samples:
            rts = by_metric.get(s.metric)
            if rts is None:
                continue
            labels = s.labels
            lk = s.lk if type(s) is KeyedSample else None
            if lk is None:
                lk = labels_key(labels) if labels else ()
            gpu = s.gpu
            value = float(s.value)
            for rt in rts:
                if rt.label_res:
                    hit = matches.get((rt.rid, lk))
                    if hit is None:
                        if len(matches) > 200_000:
                            matches.clear()
                        hit = matches[(rt.rid, lk)] = rt.labels_match(labels or {})
                    if not hit:
                        continue
                if rt.stateless and rt.rid not in with_state:  # fast path: a fine value, nothing kept
                    ref = n.refs.get((rt.ref, gpu, lk)) if rt.ref else None
                    if not rt.op(value, rt.threshold(gpu_model.get(gpu, node_model) if gpu is not None
                                                     else node_model, ref)):
                        continue
                key = (rt.rid, gpu, lk)
                st = conds.get(key)
                if st is None:
                    ref = n.refs.get((rt.ref, gpu, lk)) if rt.ref else None
                    if rt.stateless and not rt.op(value, rt.threshold(n.model_of(gpu), ref)):
                        continue  # healthy and no state yet: nothing to keep
                    st = conds[key] = _Cond(rt, gpu, labels or {}, self._component(rt.rule, gpu, labels or {}))
                    with_state[rt.rid] = with_state.get(rt.rid, 0) + 1
                elif st.prev == value and not st.active and not st.incs:  # unchanged counter: nothing to do
                    if s.ts > st.last_ts:
                        st.last_ts = float(s.ts)
                    continue
                self._on_sample(n, st, value, float(s.ts))

    def observe_columns(self, node: str, cols: Any, now: float | None = None) -> int:
        """Let the metric rules see a columnar batch (:class:`redfleet.telemetry.columns.Columns`: rows of per-GPU
        values). Same outcome as :meth:`observe_samples` on every value, but only the values that can change a
        rule's state go through it one by one: a counter that moved, a gauge that moved (judged against its
        thresholds here), a series with a condition pending or active, rules that need every sample (absence,
        thresholds from other metrics). Returns how many values went through. The caller writes the series."""
        lay = cols.layout
        plan = self._plans.get(lay.key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = self._plans[lay.key] = _ColPlan(self, lay)
        if not plan.cols.size:
            n0 = self._nodes.get(node) or self._node(node)
            if not n0.seen:
                n0.seen = True
                self._mark(n0)
            return 0
        n = self._nodes.get(node) or self._node(node)
        if not n.seen:
            n.seen = True
            self._mark(n)
        metric_of, gpu_of = lay.metric_of, lay.gpu_of
        rvs = cols.values.take(plan.cols, axis=1)  # the rule columns of every row
        prev = n.colprev.get(lay.key)
        with_nan = cols.count != cols.values.size
        if prev is None or prev.shape[0] != rvs.shape[1]:
            prev = None
            moved: np.ndarray = np.ones(rvs.shape, dtype=bool)
            any_moved = [True] * len(rvs)
        else:
            if len(rvs) == 1:
                moved = rvs != prev  # NaN (not read) compares unequal: filtered below
            else:
                before = _carry(prev, rvs)[:-1] if with_nan else rvs[:-1]
                moved = rvs != np.vstack((prev[None, :], before))  # a NaN does not move its column's last value
            any_moved = [bool(x) for x in np.any(moved, axis=1)] if len(rvs) > 1 else [bool(moved.any())]
        hot = self._hot(n, plan)
        fed = 0
        for r, ts in enumerate(cols.ts.tolist()):
            if not any_moved[r] and not hot:
                continue
            rv = rvs[r]
            pick = set(hot)
            if any_moved[r]:
                pick.update(i for i in np.flatnonzero(moved[r]).tolist() if prev is None or plan.wants(n, i, rv[i]))
            batch = []
            for i in sorted(pick):
                v = float(rv[i])
                if v == v:
                    c = int(plan.cols[i])
                    batch.append(_S(metric_of[c], v, ts, gpu_of[c], {}))
            if batch:
                fed += len(batch)
                self.observe_samples(node, batch, now)
                hot = self._hot(n, plan)  # fed conditions may have started or stopped being pending
        n.colprev[lay.key] = _carry(prev, rvs)[-1] if with_nan and prev is not None else rvs[-1].copy()
        return fed

    @staticmethod
    def _hot(n: _Node, plan: _ColPlan) -> list[int]:
        """Positions (in ``plan.cols``) of the series with a condition pending or active (they see every sample)
        and of those fed every row. Kept until the node's conditions may have changed (a sample fed, the node
        evaluated)."""
        if n.hot is not None and n.hot[0] is plan:
            return n.hot[1]
        hot = list(plan.always)
        col_of = plan.col_of
        for key, st in n.conds.items():
            if st.active or st.incs or st.prev is None or st.true_since is not None:
                i = col_of.get((key[0], key[1])) if not key[2] else None
                if i is not None:
                    hot.append(i)
        n.hot = (plan, hot)
        return hot

    @staticmethod
    def _drop_cond(n: _Node, key: tuple[str, int | None, LabelsKey]) -> None:
        if n.conds.pop(key, None) is not None:
            left = n.cond_rules.get(key[0], 0) - 1
            if left > 0:
                n.cond_rules[key[0]] = left
            else:
                n.cond_rules.pop(key[0], None)

    def _component(self, rule: MetricRule, gpu: int | None, labels: Mapping[str, str]) -> str:
        if rule.component_label:
            return f"{rule.component}:{labels.get(rule.component_label, '?')}"
        if rule.component == "gpu":
            return f"gpu:{gpu}" if gpu is not None else "gpu"
        return rule.component

    def _on_sample(self, n: _Node, st: _Cond, value: float, ts: float) -> None:
        if ts < st.last_ts:
            return
        rt = st.rt
        st.last_ts = ts
        if st.active and rt.rule.action_by_value and value != st.value:
            self._mark(n)  # the recommended action follows the value
        st.value = value
        if rt.ctype == "absent":  # a sample: present; the timer checks the silence
            if st.active:
                st.active = False
                self._mark(n)
            self._schedule(n, ts + rt.rule.for_)
            return
        model = n.model_of(st.gpu)
        if rt.ctype in ("delta", "rate"):
            prev = st.prev
            st.prev = value
            if prev is not None and value != prev:
                inc = value - prev if value >= prev else value  # a counter reset counts from 0
                if inc > 0:
                    if st.incs is None:
                        st.incs = deque()
                    st.incs.append((ts, inc))
            if not st.incs and not st.active:
                return
            measure = self._window_sum(st, ts)
        else:
            measure = value
        self._step(n, st, measure, ts, model)

    def _window_sum(self, st: _Cond, now: float) -> float:
        incs = st.incs
        if not incs:
            return 0.0
        horizon = now - st.rt.window
        while incs and incs[0][0] <= horizon:
            incs.popleft()
        total = sum(i for _, i in incs)
        if st.rt.ctype == "rate":
            return total / st.rt.window * st.rt.per
        return total

    def _step(self, n: _Node, st: _Cond, measure: float, ts: float, model: str | None) -> None:
        rt = st.rt
        thr = rt.threshold(model, n.refs.get((rt.ref, st.gpu, labels_key(st.labels))) if rt.ref else None)
        st.measure = measure
        st.thr = thr
        bad = rt.op(measure, thr)
        if st.active and not bad:
            clear = rt.clear_threshold(model)
            if clear is not None and rt.op(measure, clear):
                bad = True  # hysteresis: still beyond the clear threshold
        if bad:
            st.false_since = None
            if st.true_since is None:
                st.true_since = ts
            if not st.active and ts - st.true_since >= rt.rule.for_:
                st.active = True
                st.active_since = ts
                self._mark(n)
        else:
            st.true_since = None
            if st.active:
                if st.false_since is None:
                    st.false_since = ts
                if ts - st.false_since >= rt.rule.clear_for:
                    st.active = False
                    self._mark(n)
            if not st.active and rt.stateless:
                self._drop_cond(n, (rt.rid, st.gpu, labels_key(st.labels)))

    # --- events -------------------------------------------------------------------------------------------------
    def observe_event(self, node: str, event: Any) -> None:
        """An in-band event (``InbandEvent``: Xid, kernel, agent) or a ``BmcEvent``."""
        n = self._node(node)
        if isinstance(event, BmcEvent):
            self._bmc_event(n, event)
            return
        kind = getattr(event, "kind", "xid")
        ts = float(event.ts)
        message = event.message or ""
        code = getattr(event, "code", None)
        bus = getattr(event, "pci_bus_id", None)
        if kind == "xid" or code is not None:
            raw = getattr(event, "raw", None) or ""
            parsed = parse_xid_line(raw) or parse_xid_line(message)
            if parsed is not None:
                code = code if code is not None else parsed.code
                bus = bus or parsed.pci_bus_id
                message = message if message and "NVRM: Xid" not in message else parsed.message
            if code is not None:
                gpu = event.gpu
                if gpu is None and bus:
                    gpu = n.bus_gpu.get(norm_bus(bus) or "")
                self._xid_event(n, int(code), gpu, bus, message, ts)
                if self._xid_event_rules:  # site rules on Xid codes ("page on Xid 79"), beside the catalog
                    comp = f"gpu:{gpu}" if gpu is not None else None
                    self._match_event_rules(n, "inband", "xid", None, message, None, ts, comp, int(code))
                return
        self._match_event_rules(n, "inband", kind, None, message, None, ts, None)

    def _xid_event(self, n: _Node, code: int, gpu: int | None, bus: str | None, message: str, ts: float) -> None:
        comp = f"gpu:{gpu}" if gpu is not None else (f"gpu:pci:{norm_bus(bus)}" if bus else "gpu")
        n.xids.append(_Xid(ts, gpu, comp, code, message))
        if code == 154:
            value = recovery_action_of(message)
            if value is not None:
                if value == 0:
                    n.recovery.pop(gpu, None)
                else:
                    n.recovery[gpu] = (value, ts)
        self._mark(n)

    def _bmc_event(self, n: _Node, ev: BmcEvent) -> None:
        self._match_event_rules(n, "bmc", None, ev.message_id, ev.message, ev.severity, ev.ts, ev.component)

    def _match_event_rules(self, n: _Node, source: str, kind: str | None, message_id: str | None, message: str,
                           severity: str | None, ts: float, component: str | None, code: int | None = None) -> None:
        """Event rules on one event. An Xid (``code``) only meets rules that name codes; a rule that matches on
        nothing but severity is a catch-all, used only when no specific rule matched."""
        specific_hit = False
        catch_all: list[EventRule] = []
        for r in self._event_rules:
            m = r.match
            if m.source not in ("any", source):
                continue
            if (code is not None) != (m.codes is not None) or (code is not None and code not in (m.codes or ())):
                continue
            if m.kinds is not None and kind not in m.kinds:
                continue
            if m.severity is not None and (severity or "") not in m.severity:
                continue
            if m.message_id is not None and not (message_id and re.search(m.message_id, message_id)):
                continue
            if m.message is not None and not re.search(m.message, message or "", re.I):
                continue
            if m.message_id is None and m.message is None and m.codes is None and m.kinds is None:
                catch_all.append(r)
                continue
            specific_hit = True
            self._hit(n, r, ts, message, message_id, component)
        if not specific_hit:
            for r in catch_all:
                self._hit(n, r, ts, message, message_id, component)

    def _hit(self, n: _Node, r: EventRule, ts: float, message: str, message_id: str | None,
             component: str | None) -> None:
        comp = component if component and (r.component in ("node", "gpu") or component.startswith(r.component)) \
            else r.component
        key = (r.id, comp)
        times, _, _ = n.hits.get(key, ([], "", {}))
        keep = max(r.hold, r.recurrence.window if r.recurrence else 0.0)
        times = [t for t in times if t > ts - keep]
        times.append(ts)
        n.hits[key] = (times, message, {"message_id": message_id} if message_id else {})
        self._mark(n)

    # --- reachability, agent, inventory, sensors, NVMe ------------------------------------------------------------
    def observe_reachability(self, node: str, bmc_ok: bool, ts: float, error: str | None = None,
                             power_state: str | None = None) -> None:
        """One BMC poll: did it answer? ``power_state`` (On/Off) when the poll read it."""
        n = self._node(node)
        if power_state is not None and power_state != n.power:
            n.power = power_state
            self._mark(n)
        if bmc_ok:
            n.bmc_error = None
            if n.bmc_ok is not True:
                n.bmc_ok = True
                n.bmc_fail_since = None
                n.seen = True
                self._mark(n)
        else:
            n.bmc_error = error
            if n.bmc_ok is not False:
                n.bmc_ok = False
                n.bmc_fail_since = ts
                self._mark(n)

    def observe_agent(self, node: str, os_state: str, ts: float, uptime_s: float | None = None) -> None:
        """A heartbeat: each ingest batch from the node's agent (or the simulator's feeder)."""
        n = self._node(node)
        silent_before = n.agent_last is None or ts - n.agent_last >= self._agent_timeout()
        n.agent_last = ts if n.agent_last is None else max(n.agent_last, ts)
        if os_state != n.os_state:
            if os_state == "booting" and n.os_state not in (None, "booting"):
                self._reboot(n, ts)
            n.os_state = os_state
            n.os_state_since = ts
            self._mark(n)
        if uptime_s is not None:
            if n.uptime is not None and uptime_s + 5.0 < n.uptime:
                self._reboot(n, ts - uptime_s)
            n.uptime = uptime_s
        if silent_before:
            self._mark(n)
        else:
            self._schedule(n, n.agent_last + self._agent_timeout())

    def _agent_timeout(self) -> float:
        r = self._node_rules.get("agent_silent")
        return r.for_ if r else 15.0

    def note_reboot(self, node: str, ts: float) -> None:
        """The host rebooted (remediation knows): reasons that a reboot clears go."""
        self._reboot(self._node(node), ts)

    def _reboot(self, n: _Node, boot_ts: float) -> None:
        n.boot_ts = max(n.boot_ts, boot_ts)
        n.recovery = {g: v for g, v in n.recovery.items() if v[1] > n.boot_ts}
        self._mark(n)

    def clear(self, node: str, rule: str | None = None, component: str | None = None) -> int:
        """Operator acknowledgement: forget the event/Xid evidence behind matching reasons. Returns how many."""
        n = self._nodes.get(node)
        if n is None:
            return 0
        count = 0
        for key in list(n.hits):
            if (rule is None or key[0] == rule) and (component is None or key[1] == component):
                del n.hits[key]
                count += 1
        keep: deque[_Xid] = deque(maxlen=XID_MAX)
        for x in n.xids:
            if (rule is None or rule in ("xid", f"xid.{x.code}")) and (component is None or x.comp == component):
                count += 1
            else:
                keep.append(x)
        n.xids = keep
        if rule is None or rule in ("xid", "xid.154"):
            n.recovery = {g: v for g, v in n.recovery.items()
                          if component is not None and f"gpu:{g}" != component}
        self._mark(n)
        return count

    def observe_gpus(self, node: str, gpus: Iterable[Any] | int, expected: int | None = None,
                     now: float | None = None) -> None:
        """The GPUs the agent sees (``GpuIdentity`` list: index, PCI bus, model - or just how many) and how many
        the node should have. With the list, thresholds follow the GPU model and Xids map PCI bus -> GPU."""
        n = self._node(node)
        present: set[int] = set()
        known = not isinstance(gpus, int)
        if isinstance(gpus, int):
            present = set(range(gpus))
            gpus = []
        for g in gpus:
            idx = g.gpu
            present.add(idx)
            if g.model:
                if n.gpu_model.get(idx) != g.model:
                    n.colprev.clear()  # thresholds follow the model: judge every column again
                n.gpu_model[idx] = g.model
                n.node_model = n.node_model or g.model
            b = norm_bus(g.pci_bus_id)
            if b:
                n.bus_gpu[b] = idx
        if expected is not None:
            if expected != n.gpus_expected or present != n.gpus_present:
                self._mark(n)
            n.gpus_expected = expected
            n.gpus_present = present
            n.gpus_idx_known = known

    def observe_inventory(self, node: str, inventory: Mapping[str, Any], ts: float) -> None:
        """An inventory (``redfleet.model.inventory`` dump): component Health, GPU models, power state."""
        n = self._node(node)
        n.seen = True
        old = n.comp_health.get("inventory", {})
        comps: dict[str, tuple[str, str, str, float]] = {}
        for comp, (coll, health, name) in inventory_problems(inventory).items():
            since = old[comp][3] if comp in old and old[comp][1] == health else ts
            comps[comp] = (coll, health, name, since)
        if not n.node_model:
            n.node_model = next((str(g["model"]) for g in inventory.get("gpus") or []
                                 if isinstance(g, Mapping) and g.get("model")), None)
        for sysd in inventory.get("systems") or []:
            if isinstance(sysd, Mapping) and sysd.get("power_state"):
                n.power = str(sysd["power_state"])
                break
        self._set_comp_health(n, "inventory", comps)

    def observe_sensors(self, node: str, readings: Any, ts: float) -> None:
        """A ``SensorReadings`` (or its dict): numbers go to the series store and the metric rules as
        ``redfish_<kind>`` {sensor, name, context}; Warning/Critical sensor Health becomes component health."""
        n = self._node(node)
        rows = readings.get("readings", []) if isinstance(readings, Mapping) else readings.readings
        samples: list[_S] = []
        comps: dict[str, tuple[str, str, str, float]] = {}
        old = n.comp_health.get("sensors", {})
        keys = n.sensor_keys
        # a poll is hundreds of readings (a DGX: ~500): each one's metric name and labels key are made once per
        # node and sensor, not per poll
        if len(keys) > 20_000:
            keys.clear()
        for r in rows:
            if isinstance(r, Mapping):
                rid, kind, value, health = r.get("id"), r.get("kind") or "other", r.get("value"), r.get("health")
                ctx, state = r.get("context") or "", r.get("state")
            else:
                rid, kind, value, health = r.id, r.kind or "other", r.value, r.health
                ctx, state = r.context or "", r.state
            if value is not None:
                k = keys.get((rid, kind, ctx))
                if k is None:
                    lab = {"sensor": str(rid)}
                    if ctx:
                        lab["context"] = str(ctx)
                    k = keys[(rid, kind, ctx)] = (f"redfish_{kind}", lab, labels_key(lab))
                samples.append(_S(k[0], float(value), ts, None, k[1], k[2]))
            # The Health of a disabled or absent function says nothing about hardware: AMI MegaRAC reports its
            # disabled power-capping control (PowerControl, State Disabled) as Critical on healthy servers.
            if health in ("Warning", "Critical") and state not in IGNORED_SENSOR_STATES:
                name = (r.get("name") if isinstance(r, Mapping) else r.name) or rid
                coll = "psu" if kind == "power" and "powersupply" in ctx.lower() else kind
                comp = f"{'fan' if kind == 'fan' else coll}:{rid}"
                since = old[comp][3] if comp in old and old[comp][1] == health else ts
                comps[comp] = (coll, str(health), str(name), since)
        if self.series is not None:
            self.series.add_many(node, samples)
        self.observe_samples(node, samples, ts)
        self._set_comp_health(n, "sensors", comps)

    def _set_comp_health(self, n: _Node, source: str, comps: dict[str, tuple[str, str, str, float]]) -> None:
        old = n.comp_health.get(source, {})
        if {k: v[:2] for k, v in old.items()} != {k: v[:2] for k, v in comps.items()}:
            self._mark(n)
        n.comp_health[source] = comps

    def observe_nvme(self, node: str, reports: Iterable[Any], ts: float) -> None:
        """NVMe health (``NvmeReport``: nvme-cli smart-log JSON or raw 02h hex) -> the agent's ``REDFLEET_NVME_*``
        metrics per device (critical warning, available spare and its threshold, percent used, media errors).
        Only for reports whose numbers did not come as samples already."""
        samples: list[_S] = []
        for rep in reports:
            get = rep.get if isinstance(rep, Mapping) else (lambda k, _r=rep: getattr(_r, k, None))
            fields = _smart_fields(get("smart"), get("raw"))
            if not fields:
                continue
            dev = str(get("device") or "nvme").rsplit("/", 1)[-1]
            lab = {"device": dev}
            for key, metric in NVME_FIELDS.items():
                if fields.get(key) is not None:
                    samples.append(_S(metric, float(fields[key]), ts, None, lab))
        if self.series is not None:
            self.series.add_many(node, samples)
        self.observe_samples(node, samples, ts)

    def observe_batch(self, batch: Any, now: float | None = None) -> None:
        """Everything in an ``IngestBatch``: samples (written to the series store when the engine has one),
        events, the heartbeat (os_state, uptime), GPU identities / expected count, NVMe reports."""
        node = batch.node
        if batch.gpus or batch.gpus_expected is not None:
            self.observe_gpus(node, batch.gpus, batch.gpus_expected)
        if batch.samples:
            if self.series is not None:
                self.series.add_many(node, batch.samples)
            self.observe_samples(node, batch.samples, now)
        for ev in batch.events:
            self.observe_event(node, ev)
        if batch.nvme and not any(s.metric.startswith("REDFLEET_NVME_") for s in batch.samples):
            self.observe_nvme(node, batch.nvme, batch.sent_at)
        self.observe_agent(node, batch.os_state, batch.sent_at, batch.uptime_s)

    # --- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, now: float | None = None) -> list[HealthChange]:
        """Re-derive the health of nodes touched since the last call and of those whose timers are due."""
        now = self.clock() if now is None else now
        todo = self._dirty
        self._dirty = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, name = heapq.heappop(heap)
            n = self._nodes.get(name)
            if n is not None and n.scheduled == due:
                n.scheduled = INF
                todo.add(name)
        changes: list[HealthChange] = []
        self.evaluated_last = len(todo)
        self.evaluated_total += len(todo)
        for name in todo:
            n = self._nodes.get(name)
            if n is None:
                continue
            n.dirty = False
            ch = self._eval_node(n, now)
            if ch is not None:
                changes.append(ch)
        return changes

    def _eval_node(self, n: _Node, now: float) -> HealthChange | None:
        n.hot = None  # timers may activate or drop conditions (see _hot)
        due: list[float] = []
        reasons: list[Reason] = []
        reasons.extend(self._metric_reasons(n, now, due))
        reasons.extend(self._xid_reasons(n, now, due))
        reasons.extend(self._event_reasons(n, now, due))
        reasons.extend(self._node_reasons(n, now, due))
        reasons.extend(self._component_reasons(n, now, due))
        reasons.sort(key=lambda r: (-SEVERITY_RANK[r.severity], -action_rank(r.action), r.rule, r.component))
        n.updated = now
        future = [d for d in due if d > now]
        if future:
            self._schedule(n, min(future))
        if n.bmc_ok is None and n.agent_last is None and not n.seen and not reasons:
            new_state = "unknown"
        elif not n.seen and n.agent_last is None and all(r.rule == "node-unreachable" for r in reasons) and reasons:
            new_state = "unknown"  # never heard from at all: nothing is known about its hardware
        else:
            new_state = state_of(reasons)
        old_keys = {r.key: r for r in n.reasons}
        new_keys = {r.key: r for r in reasons}
        changed = new_state != n.state or old_keys.keys() != new_keys.keys() or any(
            (o.severity, o.action, o.classification) != (new_keys[k].severity, new_keys[k].action,
                                                         new_keys[k].classification)
            for k, o in old_keys.items() if k in new_keys)
        n.reasons = tuple(reasons)
        if not changed:
            return None
        old_state = n.state
        if new_state != old_state:
            n.since = now
        n.state = new_state
        ch = HealthChange(
            node=n.name, old=old_state, new=new_state, reasons=tuple(reasons), at=now,
            action=self._top_action(reasons),
            added=tuple(f"{k[0]}@{k[1]}" for k in new_keys if k not in old_keys),
            removed=tuple(f"{k[0]}@{k[1]}" for k in old_keys if k not in new_keys))
        n.history.append(ch)
        return ch

    @staticmethod
    def _top_action(reasons: Iterable[Reason]) -> str | None:
        acts = [r.action for r in reasons if r.severity != "info" or r.action != "IGNORE"]
        return max(acts, key=action_rank) if acts else None

    def _metric_reasons(self, n: _Node, now: float, due: list[float]) -> list[Reason]:
        out: list[Reason] = []
        seen: set[tuple[str, str]] = set()
        for key, st in list(n.conds.items()):
            rt = st.rt
            rule = rt.rule
            if rt.ctype in ("delta", "rate") and (st.active or st.incs):
                measure = self._window_sum(st, now)
                self._step(n, st, measure, now, n.model_of(st.gpu))
                if st.incs:
                    due.append(st.incs[0][0] + rt.window + 0.001)
                if st.active and st.false_since is not None:
                    due.append(st.false_since + rule.clear_for)
            elif rt.ctype == "absent":
                silent = now - st.last_ts
                agent_ok = n.agent_last is not None and now - n.agent_last < self._agent_timeout()
                if silent >= rule.for_ and agent_ok:  # the agent reports, this series does not
                    if not st.active:
                        st.active, st.active_since = True, st.last_ts + rule.for_
                else:
                    st.active = False
                    if silent < rule.for_:
                        due.append(st.last_ts + rule.for_)
            if not st.active:
                if rt.stateless and st.true_since is None:
                    self._drop_cond(n, key)
                continue
            action = rule.action
            if rule.action_by_value:
                action = rule.action_by_value.get(int(st.value), action)
            fields: dict[str, Any] = dict(st.labels)
            raw: float | int = int(st.value) if float(st.value).is_integer() else st.value
            fields.update(value=st.measure, raw=raw, threshold=st.thr, gpu=st.gpu,
                          model=n.model_of(st.gpu) or "unknown model", window=_fmt_dur(rt.window),
                          action=action, node=n.name)
            fields["for"] = _fmt_dur(rule.for_)
            default = f"{rule.metric} {st.measure:g} {rule.condition.op} {st.thr:g}"
            if rule.component_label or rule.component == "gpu":
                default = f"{st.comp}: {default}"
            if (rule.id, st.comp) in seen:  # two series of one component (labels): one reason
                continue
            seen.add((rule.id, st.comp))
            out.append(Reason(rule.id, rule.severity, rule.classification, action, st.comp,
                              _format(rule.message, default, **fields), st.active_since,
                              {"value": st.measure}))
        return out

    # Xid ------------------------------------------------------------------------------------------------------
    def _policy(self, bucket: str) -> BucketPolicy:
        assert self._xid is not None
        return self._xid.buckets.get(bucket) or self._xid.buckets[self._xid.fallback_bucket]

    def xid_bucket(self, code: int) -> str:
        """The immediate resolution bucket the engine uses for a code (catalog, then the rule's overrides)."""
        x = self._xid
        if x is not None and code in x.overrides:
            return x.overrides[code]
        b = self.catalog.immediate_bucket(code)
        if b and x is not None and b in x.buckets:
            return b
        return x.fallback_bucket if x is not None else (b or "CONTACT_SUPPORT")

    def xid_verdict(self, code: int, message: str = "") -> dict[str, Any]:
        """What one Xid on a GPU, seen alone, leads to: bucket, action, severity, classification."""
        bucket = self.xid_bucket(code)
        pol = self._policy(bucket)
        sev, cls, action, extra = self._xid_decide(code, bucket, pol, message, [], None)
        return {"code": code, "mnemonic": self.catalog.mnemonic(code), "bucket": bucket, "action": action,
                "severity": sev, "classification": cls, **extra}

    def _xid_decide(self, code: int, bucket: str, pol: BucketPolicy, message: str, others: list[_Xid],
                    recovery: tuple[int, float] | None) -> tuple[str, str, str, dict[str, Any]]:
        """Base decision for one occurrence from its bucket, with the WORKFLOW_* logic. ``others``: other Xids on
        the same GPU within the correlation window."""
        sev, cls, action = pol.severity, pol.classification, pol.action
        extra: dict[str, Any] = {}
        other_codes = {o.code for o in others}
        if bucket == "WORKFLOW_XID_45":
            if other_codes - {45}:
                sev, cls, action = "info", "transient", "IGNORE"
                extra["note"] = "not solo: follow the other Xid"
        elif bucket == "WORKFLOW_XID_48":
            if other_codes & {63, 64}:
                action = "DRAIN_AND_RESET"
            else:
                extra["investigate"] = "RUN_FIELDDIAG"
        elif bucket == "WORKFLOW_NVLINK_ERR":
            verdicts = nvlink_verdicts(message)
            extra["verdicts"] = sorted(verdicts)
            link = link_of(message)
            if link is not None:
                extra["link"] = link
            if verdicts and verdicts <= {"ignore"}:
                sev, cls, action = "info", "transient", "IGNORE"
            elif verdicts & {"mechanical", "si"}:
                action = "CHECK_MECHANICALS"
            elif verdicts & {"fabric"}:
                action = "RESTART_FM"
            elif verdicts & {"diag_repeat"}:
                action = "RUN_DIAG"
            if "fatal" in message.lower() and action_rank(action) < ACTION_RANK["RESET_GPU"]:
                action = "RESET_GPU"
        elif bucket in ("WORKFLOW_NVLINK5_ERR", "XID_154_EVAL"):
            dec = self.catalog.decode_nvlink5(code, message) if bucket == "WORKFLOW_NVLINK5_ERR" else None
            b2 = dec[0] if dec else bucket
            if dec:
                extra.update(decoded_bucket=b2, investigate=dec[1], subcodes=dec[2])
            if b2 == "XID_154_EVAL":
                if recovery is not None:
                    sev, cls = "critical", "suspect"
                    action = self._xid.recovery_actions.get(recovery[0], "RESET_GPU") if self._xid else "RESET_GPU"
                else:
                    p2 = self._policy("XID_154_EVAL")
                    sev, cls, action = p2.severity, p2.classification, p2.action
            elif b2 != bucket and self._xid is not None and b2 in self._xid.buckets:
                p2 = self._policy(b2)
                sev, cls, action = p2.severity, p2.classification, p2.action
        return sev, cls, action, extra

    def _escalate(self, sev: str, cls: str, action: str, esc: Escalation | None) -> tuple[str, str, str]:
        ladder = self._xid.ladder if self._xid else []
        if esc is not None and esc.action:
            new_action = esc.action
        elif action in ladder:
            new_action = ladder[min(ladder.index(action) + 1, len(ladder) - 1)]
        else:
            new_action = "CONTACT_SUPPORT" if action_rank(action) < ACTION_RANK["CONTACT_SUPPORT"] else action
        new_sev = esc.severity if esc is not None and esc.severity else _bump(SEVERITY_RANK, sev)
        new_cls = esc.classification if esc is not None and esc.classification else _bump(CLASS_RANK, cls)
        return new_sev, new_cls, new_action

    def _xid_reasons(self, n: _Node, now: float, due: list[float]) -> list[Reason]:
        x = self._xid
        if x is None:
            return []
        while n.xids and n.xids[0].ts < now - XID_KEEP:
            n.xids.popleft()
        out: list[Reason] = []
        groups: dict[tuple[str, int], list[_Xid]] = {}
        for occ in n.xids:
            groups.setdefault((occ.comp, occ.code), []).append(occ)
        by_comp: dict[str, list[_Xid]] = {}
        for occ in n.xids:
            by_comp.setdefault(occ.comp, []).append(occ)
        for (comp, code), occs in groups.items():
            if code == 154:
                continue  # the driver's verdict: below
            bucket = self.xid_bucket(code)
            pol = self._policy(bucket)
            if pol.clear_on_reboot:
                occs = [o for o in occs if o.ts > n.boot_ts]
            if not occs:
                continue
            last = occs[-1]
            if bucket == "WORKFLOW_XID_45" and now < last.ts + x.correlate:
                due.append(last.ts + x.correlate)  # solo or not: decided once the window has passed
                continue
            others = [o for o in by_comp[comp] if o.code != code and abs(o.ts - last.ts) <= x.correlate]
            recovery = n.recovery.get(last.gpu)
            sev, cls, action, extra = self._xid_decide(code, bucket, pol, last.message, others, recovery)
            if action == "IGNORE":  # the catalog says so (not solo 45, ignorable NVLink bits ...): never escalates
                continue
            recent = [o for o in occs if o.ts > now - x.recurrence.window]
            escalated = len(recent) >= x.recurrence.count
            if escalated:
                sev, cls, action = self._escalate(sev, cls, action, pol.repeat or x.recurrence.then)
                due.append(recent[-x.recurrence.count].ts + x.recurrence.window)
            if bucket == "WORKFLOW_NVLINK_ERR" and "ecc" in extra.get("verdicts", ()):
                same_link = [o for o in occs if link_of(o.message) == extra.get("link")
                             and "ecc" in nvlink_verdicts(o.message)]
                if len(same_link) > 2:
                    sev, cls, action = "critical", "suspect", "CONTACT_SUPPORT"
            driver = False
            if recovery is not None and self.catalog.entry(code) and (self.catalog.entry(code) or {}).get(
                    "xid154_linkage") and recovery[1] >= last.ts - x.correlate:
                action = x.recovery_actions.get(recovery[0], action)
                driver = True
            hold = pol.hold
            if escalated:
                hold = max(hold, x.recurrence.window)
            if (sev == "info" and action == "IGNORE") or now - last.ts >= hold:
                continue
            due.append(last.ts + hold)
            mn = self.catalog.mnemonic(code)
            msg = f"{comp}: Xid {code} {mn}"
            if len(recent) > 1:
                msg += f" x{len(recent)} in {_fmt_dur(x.recurrence.window)}"
            msg += f" -> {action}"
            if driver:
                msg += " (driver recovery action)"
            if last.message:
                msg += f": {last.message[:160]}"
            details = {"code": code, "bucket": bucket, "count": len(recent), "escalated": escalated,
                       "last": last.ts, **extra}
            out.append(Reason(f"xid.{code}", sev, cls, action, comp, msg, occs[0].ts if escalated else last.ts,
                              details))
        for gpu, (value, ts) in n.recovery.items():
            if ts <= n.boot_ts:
                continue
            action = x.recovery_actions.get(value, "RESET_GPU")
            comp = f"gpu:{gpu}" if gpu is not None else "gpu"
            out.append(Reason("xid.154", "critical", "suspect", action, comp,
                              f"{comp}: driver recovery action {RECOVERY_NAMES.get(value, hex(value))} -> {action}",
                              ts, {"code": 154, "recovery_action": value}))
        return out

    # other reasons ---------------------------------------------------------------------------------------------
    def _event_reasons(self, n: _Node, now: float, due: list[float]) -> list[Reason]:
        out: list[Reason] = []
        rules = {r.id: r for r in self._event_rules}
        for key, (times, message, details) in list(n.hits.items()):
            r = rules.get(key[0])
            if r is None:
                continue
            keep = max(r.hold, r.recurrence.window if r.recurrence else 0.0)
            times = [t for t in times if t > now - keep]
            if not times:
                del n.hits[key]
                continue
            sev: str = r.severity
            cls: str = r.classification
            action = r.action
            escalated = False
            if r.recurrence:
                recent = [t for t in times if t > now - r.recurrence.window]
                if len(recent) >= r.recurrence.count:
                    escalated = True
                    sev, cls, action = self._escalate(sev, cls, action, r.recurrence.then)
                    due.append(recent[-r.recurrence.count] + r.recurrence.window)
            if now - times[-1] >= r.hold and not escalated:
                continue
            due.append(times[-1] + r.hold)
            text = _format(r.message, message or r.description or r.id, message=message, count=len(times))
            out.append(Reason(r.id, sev, cls, action, key[1], text, times[0] if escalated else times[-1],
                              {"count": len(times), **details}))
        return out

    def _node_reasons(self, n: _Node, now: float, due: list[float]) -> list[Reason]:
        rules = self._node_rules
        out: dict[str, Reason] = {}
        powered_off = (n.power or "").lower() == "off"
        silent_for = now - n.agent_last if n.agent_last is not None else None

        def add(kind: str, since: float, message: str, component: str | None = None) -> None:
            r = rules[kind]
            out[kind] = Reason(r.id, r.severity, r.classification, r.action, component or r.component, message,
                               since)

        r = rules.get("bmc_unreachable")
        if r and n.bmc_ok is False and n.bmc_fail_since is not None:
            if now - n.bmc_fail_since >= r.for_:
                add("bmc_unreachable", n.bmc_fail_since + r.for_,
                    f"BMC unreachable for {now - n.bmc_fail_since:.0f}s ({n.bmc_error or 'no answer'})"
                    + ("; host OS up (agent reporting)" if silent_for is not None and silent_for < 15 else ""))
            else:
                due.append(n.bmc_fail_since + r.for_)
        r = rules.get("node_unreachable")
        if r and n.bmc_ok is False and n.bmc_fail_since is not None and (silent_for is None or silent_for > 0):
            since = max(n.bmc_fail_since, n.agent_last or -INF)
            if now - since >= r.for_ and (silent_for is None or silent_for >= r.for_):
                add("node_unreachable", since + r.for_,
                    f"node unreachable: BMC ({n.bmc_error or 'no answer'}) and agent silent")
            else:
                due.append(since + r.for_)
        if silent_for is not None and not powered_off and n.bmc_ok is not False:
            r = rules.get("agent_silent")
            if r:
                if silent_for >= r.for_:
                    add("agent_silent", n.agent_last + r.for_,  # type: ignore[operator]
                        f"no data from the in-band agent for {silent_for:.0f}s; BMC answers")
                else:
                    due.append(n.agent_last + r.for_)  # type: ignore[operator]
            r = rules.get("os_unresponsive")
            if r and n.bmc_ok is True:
                if silent_for >= r.for_:
                    add("os_unresponsive", n.agent_last + r.for_,  # type: ignore[operator]
                        f"host silent for {silent_for:.0f}s while the BMC answers and power is "
                        f"{n.power or 'unknown'}: OS hung or down")
                else:
                    due.append(n.agent_last + r.for_)  # type: ignore[operator]
        r = rules.get("os_state")
        if r and n.os_state in r.condition.states and not powered_off:
            if now - n.os_state_since >= r.for_:
                add("os_state", n.os_state_since,
                    f"host OS {n.os_state} (reported in-band); BMC "
                    f"{'answers' if n.bmc_ok else 'unreachable' if n.bmc_ok is False else 'not polled yet'}")
            else:
                due.append(n.os_state_since + r.for_)
        r = rules.get("gpu_missing")
        if r and n.gpus_expected is not None and n.gpus_present is not None \
                and len(n.gpus_present) < n.gpus_expected and (silent_for is None or silent_for < 60) \
                and n.os_state in (None, "up"):  # a hung/booting host reports no GPUs: not a lost GPU
            missing = sorted(set(range(n.gpus_expected)) - n.gpus_present) if n.gpus_idx_known else []
            miss = ",".join(map(str, missing)) if missing else "?"
            add("gpu_missing", n.agent_last or now,
                f"{len(n.gpus_present)} of {n.gpus_expected} GPUs visible in-band (missing: {miss})",
                f"gpu:{missing[0]}" if len(missing) == 1 else "gpu")
        if "node_unreachable" in out:
            for k in ("bmc_unreachable", "agent_silent", "os_unresponsive"):
                out.pop(k, None)
        if "os_state" in out or "os_unresponsive" in out:
            out.pop("agent_silent", None)
        if "os_state" in out:
            out.pop("os_unresponsive", None)
        return list(out.values())

    def _component_reasons(self, n: _Node, now: float, due: list[float],
                           held: list[Reason] | None = None) -> list[Reason]:
        """The component-health reasons whose hold time is up; those still inside it go to ``held``."""
        out: dict[tuple[str, str], Reason] = {}
        for source, comps in n.comp_health.items():
            for comp, (coll, health, name, since) in comps.items():
                for r in self._comp_rules:
                    if r.source not in ("any", source) or coll not in r.collections or health not in r.health:
                        continue
                    waiting = now - since < r.for_
                    if waiting:
                        due.append(since + r.for_)  # look again when the hold time is up
                        if held is None:
                            break
                    key = (r.id, comp)
                    if key not in out:
                        text = _format(r.message, f"{name}: Health {health} (BMC {source})", name=name,
                                       health=health, component=comp)
                        reason = Reason(r.id, r.severity, r.classification, r.action, comp, text, since)
                        if not waiting:
                            out[key] = reason
                        elif held is not None:
                            held.append(reason)
                    break
        return list(out.values())

    def held(self, node: str, now: float | None = None) -> list[Reason]:
        """Component Health the BMC reports bad that a rule still holds (inside its ``for:``): not a reason yet,
        but no proof of health either. Remediation's gate waits these out rather than pass a node on them."""
        n = self._nodes.get(node)
        if n is None:
            return []
        out: list[Reason] = []
        self._component_reasons(n, self.clock() if now is None else now, [], out)
        return out

    # --- reading ------------------------------------------------------------------------------------------------
    def node_health(self, node: str) -> NodeHealth:
        n = self._nodes.get(node)
        if n is None:
            return NodeHealth(node, "unknown", [], {}, None, None)
        worst: dict[str, int] = {}
        for r in n.reasons:
            worst[r.component] = max(worst.get(r.component, 0), SEVERITY_RANK[r.severity])
        comps = {c: ("healthy", "degraded", "unhealthy")[w] for c, w in worst.items()}
        return NodeHealth(node, n.state, list(n.reasons), comps, n.since, self._top_action(n.reasons), n.updated)

    def history(self, node: str) -> list[HealthChange]:
        n = self._nodes.get(node)
        return list(n.history) if n else []

    def states(self) -> dict[str, str]:
        return {name: n.state for name, n in self._nodes.items()}


_S = KeyedSample


def _smart_fields(smart: Any, raw: Any) -> dict[str, Any]:
    try:
        if isinstance(smart, Mapping) and smart:
            from redfleet.predict.jsonfmt import parse_nvme_smart_log

            return dict(parse_nvme_smart_log(smart).fields)
        if isinstance(raw, Mapping) and raw.get("smart_02h"):
            from redfleet.predict import decode_smart

            return dict(decode_smart(bytes.fromhex(str(raw["smart_02h"])), strict=False).fields)
    except (ValueError, TypeError, KeyError):
        return {}
    return {}
