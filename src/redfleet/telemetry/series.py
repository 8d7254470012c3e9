"""Recent history per metric in memory: ring buffers for the health rules and for plots.

One series per (node, metric, gpu, labels). Each series keeps two tiers so that 10,000 nodes x 8 GPUs x ~20
metrics at 1 Hz fit in memory:

- a *fine* ring of the last ``capacity`` samples (default 60: one minute at 1 Hz), where a value equal to the
  previous stored one is coalesced (a constant counter stores one point per minute; the end of a constant run and
  the latest timestamp are kept, so ``latest()`` and ``window()`` see them);
- a *coarse* ring of one point per ``coarse_step`` seconds (the last value seen in the step; default 10 s x 60 =
  ten minutes; a step whose value did not change adds no point) that answers windows older than the fine ring
  reaches. Points are a step function: a value holds until the next point.

Rings grow by appending until full (a constant series stays small) and live in ``array('d')`` (16 bytes a point,
timestamp + value interleaved). ``max_age`` drops points older than that many seconds from query answers.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

LabelsKey = tuple[tuple[str, str], ...]
KEEPALIVE_STEPS = 6  # an unchanged value is stored again after this many coarse steps (1 min by default)


class SampleLike(Protocol):
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def ts(self) -> float: ...
    @property
    def gpu(self) -> int | None: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class SeriesKey:
    node: str
    metric: str
    gpu: int | None
    labels: LabelsKey

    @property
    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)


def labels_key(labels: Mapping[str, str] | None) -> LabelsKey:
    if not labels:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


class Ring:
    """One series. ``buf``/``cbuf`` hold (ts, value) pairs interleaved; ``pos``/``cpos`` are the next write slots
    once the ring is full."""

    __slots__ = ("buf", "cap", "cbkt", "cbuf", "ccap", "cnew", "cpos", "last_ts", "last_v", "pos", "step",
                 "stored_ts")

    def __init__(self, cap: int, ccap: int, step: float) -> None:
        self.buf = array("d")
        self.cbuf = array("d")
        self.cap = cap
        self.ccap = ccap
        self.step = step
        self.pos = 0
        self.cpos = 0
        self.cnew = 0  # index of the newest coarse point
        self.cbkt = float("nan")  # its step number (ts // step)
        self.last_ts = float("-inf")
        self.last_v = float("nan")
        self.stored_ts = float("-inf")  # ts of the newest point stored in the fine ring

    def add(self, value: float, ts: float) -> None:
        last_ts = self.last_ts
        if ts < last_ts:  # out of order: older than what we have; keep it out of the rings
            return
        prev_v = self.last_v
        self.last_ts = ts
        self.last_v = value
        step = self.step
        # fine ring: coalesce an unchanged value (stored again once a minute)
        if value != prev_v:
            if last_ts > self.stored_ts:  # close the coalesced run: keep its last point
                self._store(last_ts, prev_v)
            self.stored_ts = ts
            buf = self.buf
            n = len(buf)
            if n >= 2 * self.cap:  # full: overwrite the oldest
                p = self.pos
                buf[p] = ts
                buf[p + 1] = value
                p += 2
                self.pos = 0 if p >= n else p
            else:
                self._store(ts, value)
        elif ts - self.stored_ts >= step * KEEPALIVE_STEPS:
            self._store(ts, value)
        # coarse ring: one point per step (the last value seen in it)
        if self.ccap <= 0:
            return
        cbuf = self.cbuf
        b = ts // step
        if b == self.cbkt:
            p = self.cnew
            cbuf[p] = ts
            cbuf[p + 1] = value
            return
        n = len(cbuf)
        if n and value == cbuf[self.cnew + 1]:
            return  # unchanged: the newest coarse point still says it (a step function)
        self.cbkt = b
        ccap2 = 2 * self.ccap
        if n < ccap2:
            self.cnew = n
            cbuf.append(ts)
            cbuf.append(value)
            if n + 2 == ccap2:
                self.cbuf = array("d", cbuf)  # full: drop append's over-allocation
        else:
            p = self.cpos
            self.cnew = p
            cbuf[p] = ts
            cbuf[p + 1] = value
            p += 2
            self.cpos = 0 if p >= ccap2 else p

    def _store(self, ts: float, value: float) -> None:
        self.stored_ts = ts
        buf = self.buf
        n = len(buf)
        if n < 2 * self.cap:
            buf.append(ts)
            buf.append(value)
            if n + 2 == 2 * self.cap:
                self.buf = array("d", buf)  # full: drop append's over-allocation
        else:
            p = self.pos
            buf[p] = ts
            buf[p + 1] = value
            p += 2
            self.pos = 0 if p >= 2 * self.cap else p

    @staticmethod
    def _iter(buf: array, pos: int, cap: int) -> Iterator[tuple[float, float]]:
        n = len(buf)
        start = pos if n >= 2 * cap else 0
        for i in range(n // 2):
            j = (start + 2 * i) % n
            yield buf[j], buf[j + 1]

    def points(self, since: float) -> list[tuple[float, float]]:
        """(ts, value) pairs with ts >= since, oldest first: coarse points older than the fine ring, then the fine
        ring, then the latest sample when it was coalesced away."""
        fine = [p for p in self._iter(self.buf, self.pos, self.cap) if p[0] >= since]
        fine_start = self.buf[self.pos] if len(self.buf) >= 2 * self.cap else (self.buf[0] if self.buf else None)
        out: list[tuple[float, float]] = []
        if self.ccap > 0 and (fine_start is None or fine_start > since):
            for p in self._iter(self.cbuf, self.cpos, self.ccap):
                if p[0] >= since and (fine_start is None or p[0] < fine_start):
                    out.append(p)
        out.extend(fine)
        if self.last_ts > self.stored_ts and self.last_ts >= since:
            out.append((self.last_ts, self.last_v))
        return out

    def nbytes(self) -> int:
        return self.buf.buffer_info()[1] * 8 + self.cbuf.buffer_info()[1] * 8


class SeriesStore:
    """In-memory recent history: ``add``/``add_many`` to write, ``window``/``latest`` to read."""

    def __init__(self, capacity: int = 60, coarse_step: float = 10.0, coarse_capacity: int = 60,
                 max_age: float | None = None, metrics: Iterable[str] | None = None) -> None:
        """``metrics``: keep only these metric names (None: all) - at fleet scale the rules do not need the
        series (the health engine keeps its own state), only plots do."""
        if capacity < 1:
            raise ValueError(f"SeriesStore capacity must be >= 1, got {capacity}")
        if coarse_step <= 0:
            raise ValueError(f"SeriesStore coarse_step must be > 0 s, got {coarse_step}")
        self.capacity = capacity
        self.coarse_step = float(coarse_step)
        self.coarse_capacity = max(0, coarse_capacity)
        self.max_age = max_age
        self.metrics: frozenset[str] | None = frozenset(metrics) if metrics is not None else None
        self._nodes: dict[str, dict[tuple[str, int | None, LabelsKey], Ring]] = {}

    # --- writing ------------------------------------------------------------------------------------------------
    def _ring(self, node: str, key: tuple[str, int | None, LabelsKey]) -> Ring:
        per = self._nodes.get(node)
        if per is None:
            per = self._nodes[node] = {}
        ring = per.get(key)
        if ring is None:
            ring = per[key] = Ring(self.capacity, self.coarse_capacity, self.coarse_step)
        return ring

    def add(self, node: str, metric: str, value: float, ts: float, gpu: int | None = None,
            labels: Mapping[str, str] | None = None) -> None:
        if self.metrics is not None and metric not in self.metrics:
            return
        self._ring(node, (metric, gpu, labels_key(labels))).add(float(value), float(ts))

    def add_many(self, node: str, samples: Iterable[SampleLike]) -> int:
        """Write a batch of samples (``redfleet.model.ingest.Sample`` or anything with metric/value/ts/gpu/labels).
        Returns how many were written."""
        per = self._nodes.get(node)
        if per is None:
            per = self._nodes[node] = {}
        cap, ccap, step = self.capacity, self.coarse_capacity, self.coarse_step
        keep = self.metrics
        n = 0
        for s in samples:
            if keep is not None and s.metric not in keep:
                continue
            lab = s.labels
            key = (s.metric, s.gpu, labels_key(lab) if lab else ())
            ring = per.get(key)
            if ring is None:
                ring = per[key] = Ring(cap, ccap, step)
            ring.add(s.value, s.ts)
            n += 1
        return n

    def drop_node(self, node: str) -> None:
        self._nodes.pop(node, None)

    # --- reading ------------------------------------------------------------------------------------------------
    def _get(self, node: str, metric: str, gpu: int | None, labels: Mapping[str, str] | None) -> Ring | None:
        per = self._nodes.get(node)
        if per is None:
            return None
        return per.get((metric, gpu, labels_key(labels)))

    def window(self, node: str, metric: str, seconds: float, now: float, gpu: int | None = None,
               labels: Mapping[str, str] | None = None) -> list[tuple[float, float]]:
        """Points with ``now - seconds <= ts <= now``, oldest first (coarser beyond the fine ring's reach)."""
        ring = self._get(node, metric, gpu, labels)
        if ring is None:
            return []
        since = now - seconds
        if self.max_age is not None:
            since = max(since, now - self.max_age)
        return [p for p in ring.points(since) if p[0] <= now]

    def latest(self, node: str, metric: str, gpu: int | None = None,
               labels: Mapping[str, str] | None = None) -> tuple[float, float] | None:
        ring = self._get(node, metric, gpu, labels)
        if ring is None or ring.last_ts == float("-inf"):
            return None
        return ring.last_ts, ring.last_v

    def keys(self, node: str) -> list[SeriesKey]:
        per = self._nodes.get(node, {})
        return [SeriesKey(node, m, g, lab) for (m, g, lab) in per]

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def series_count(self) -> int:
        return sum(len(per) for per in self._nodes.values())

    def stats(self) -> dict[str, Any]:
        """Counts and the bytes held in ring buffers (not counting Python object overhead)."""
        series = 0
        data = 0
        for per in self._nodes.values():
            series += len(per)
            for ring in per.values():
                data += ring.nbytes()
        return {"nodes": len(self._nodes), "series": series, "buffer_bytes": data}
