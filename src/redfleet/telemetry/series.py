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

Columnar batches (:mod:`redfleet.telemetry.columns`: a row of numbers per second for a node's GPUs) are kept per
node and layout in a :class:`Block` instead, written a row at a time without a Python object per value: the same
two tiers as rows of the columns whose value ever changed; a column that never changed keeps its value and the
times it was first and last read (a step function, as the rings' coalescing gives). Readers see both kinds alike.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.telemetry.columns import Columns, Layout

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


@dataclass(slots=True)
class KeyedSample:
    """A sample that may carry its labels' key (``lk``, what :func:`labels_key` gives) already made: the health
    engine keeps those per BMC sensor, so a poll of ~500 sensors does not sort ~1,000 label sets again."""

    metric: str
    value: float
    ts: float
    gpu: int | None
    labels: dict[str, str]
    lk: LabelsKey | None = None


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


class Block:
    """One node's series of one column layout. ``last``/``last_ts``: each column's latest value and when it was read
    (NaN / -inf: never); ``first_ts``: when a column took the value it has held since (for columns that never
    changed). ``vcols``: the columns whose value changed at least once, the columns of the fine ring ``fv`` (a row
    per row written, times in ``fts``) and of the coarse ring ``cv`` (the last row of each ``step``, times in
    ``cts``; a step's row is copied there from the fine ring when the next step begins; float32: older points keep
    7 significant digits, at 10,000 nodes that halves the coarse tier's ~650 MB). ``steady``: the other
    columns, ``steady_v`` their values: a row whose steady columns read the same and that has no NaN costs a few
    array operations (the common case: counters that did not move, gauges that did)."""

    __slots__ = ("cap", "cbkt", "ccap", "cn", "cnew", "cts", "cv", "first_ts", "fn", "fp", "fts", "fv", "last",
                 "last_ts", "layout", "newest", "steady", "steady_v", "step", "vcols", "vpos")

    def __init__(self, lay: Layout, cap: int, ccap: int, step: float) -> None:
        size = lay.size
        self.layout = lay
        self.cap, self.ccap, self.step = cap, max(ccap, 0), step
        self.last = np.full(size, np.nan)
        self.last_ts = np.full(size, -np.inf)
        self.first_ts = np.full(size, np.nan)
        self.vcols = np.empty(0, dtype=np.intp)
        self.vpos = np.full(size, -1, dtype=np.intp)
        self.steady = np.arange(size, dtype=np.intp)
        self.steady_v = self.last.copy()  # NaN: never compares equal, so the first row takes the exact path
        self.fts = np.full(cap, np.nan)
        self.fv = np.empty((cap, 0))
        self.fn = self.fp = 0  # rows held, next row written
        self.cts = np.full(self.ccap, np.nan)
        self.cv = np.empty((self.ccap, 0), dtype=np.float32)  # history older than the fine ring: 7 digits
        self.cn = self.cnew = 0
        self.cbkt = np.nan  # step number of the newest fine row
        self.newest = -np.inf  # time of the newest row written

    def add_row(self, ts: float, row: np.ndarray) -> None:
        if ts < self.newest:  # out of order: older than what we have; keep it out (as Ring.add does)
            return
        total = float(np.add.reduce(row))
        if total != total or not (row.take(self.steady) == self.steady_v).all():
            self._exact(ts, row)  # a NaN (value not read) or a steady column moved
        else:
            np.copyto(self.last, row)
            self.last_ts.fill(ts)
        if self.ccap > 0:
            b = ts // self.step
            if b != self.cbkt:
                if self.fn:  # the step that ended: its last row goes to the coarse ring
                    newest = (self.fp - 1) % self.cap
                    self.cnew = (self.cnew + 1) % self.ccap if self.cn else 0
                    self.cn = min(self.cn + 1, self.ccap)
                    self.cts[self.cnew] = self.fts[newest]
                    self.cv[self.cnew] = self.fv[newest]
                self.cbkt = b
        p = self.fp
        self.fts[p] = ts
        row.take(self.vcols, out=self.fv[p])
        self.fp = (p + 1) % self.cap
        self.fn = min(self.fn + 1, self.cap)
        self.newest = ts

    def add_rows(self, ts: np.ndarray, rows: np.ndarray) -> bool:
        """Several rows at once when that is the plain case (times ascending after the newest, no NaN, steady
        columns unchanged, fewer rows than the fine ring holds); False (nothing written) otherwise."""
        n = len(ts)
        if n < 2 or n >= self.cap or ts[0] < self.newest or (n > 1 and (np.diff(ts) < 0).any()):
            return False
        total = float(np.add.reduce(rows, axis=None))
        if total != total or not (rows[:, self.steady] == self.steady_v).all():
            return False
        tl = ts.tolist()
        if self.ccap > 0:  # coarse bookkeeping row by row (scalars), the writes below in one go
            for r, t in enumerate(tl):
                b = t // self.step
                if b != self.cbkt:
                    if self.fn or r:
                        src_t, src = (tl[r - 1], rows[r - 1].take(self.vcols)) if r else \
                            (self.fts[(self.fp - 1) % self.cap], self.fv[(self.fp - 1) % self.cap])
                        self.cnew = (self.cnew + 1) % self.ccap if self.cn else 0
                        self.cn = min(self.cn + 1, self.ccap)
                        self.cts[self.cnew] = src_t
                        self.cv[self.cnew] = src
                    self.cbkt = b
        idx = (self.fp + np.arange(n)) % self.cap
        self.fts[idx] = ts
        self.fv[idx] = rows[:, self.vcols]
        self.fp = (self.fp + n) % self.cap
        self.fn = min(self.fn + n, self.cap)
        np.copyto(self.last, rows[-1])
        self.last_ts.fill(tl[-1])
        self.newest = tl[-1]
        return True

    def _exact(self, ts: float, row: np.ndarray) -> None:
        seen = ~np.isnan(row)
        last = self.last
        moved = seen & (row != last)
        if moved.any():
            new = moved & np.isnan(last)  # first reading of a column
            if new.any():
                self.first_ts[new] = ts
            grow = np.flatnonzero(moved & ~new & (self.vpos < 0))
            if grow.size:
                self._promote(grow)
        last[seen] = row[seen]
        self.last_ts[seen] = ts
        self.steady_v = last.take(self.steady)

    def _promote(self, cols: np.ndarray) -> None:
        """Columns that changed for the first time join the rings, with the value they held until now (NaN in
        the rows written before they were first read)."""
        old = self.last[cols]
        first = self.first_ts[cols]
        fill_f = np.where(self.fts[:, None] >= first[None, :], old[None, :], np.nan)
        fill_c = np.where(self.cts[:, None] >= first[None, :], old[None, :], np.nan)
        self.vpos[cols] = np.arange(self.vcols.size, self.vcols.size + cols.size)
        self.vcols = np.concatenate((self.vcols, cols))
        self.steady = np.flatnonzero(self.vpos < 0)
        self.fv = np.concatenate((self.fv, fill_f), axis=1)
        self.cv = np.concatenate((self.cv, fill_c.astype(np.float32)), axis=1)

    @staticmethod
    def _rows(n: int, newest: int, cap: int) -> list[int]:
        """Ring row indices, oldest first."""
        start = (newest - n + 1) % cap if cap else 0
        return [(start + i) % cap for i in range(n)]

    def points(self, col: int, since: float) -> list[tuple[float, float]]:
        """(ts, value) pairs with ts >= since, oldest first, as :meth:`Ring.points` gives them."""
        if self.last_ts[col] == -np.inf:
            return []
        fine_rows = self._rows(self.fn, self.fp - 1, self.cap)
        fine_start = float(self.fts[fine_rows[0]]) if fine_rows else None
        coarse_rows = self._rows(self.cn, self.cnew, self.ccap) if self.cn else []
        vp = int(self.vpos[col])
        last_ts, last_v = float(self.last_ts[col]), float(self.last[col])
        if vp < 0:  # never changed: the value from its first reading to its last
            first = float(self.first_ts[col])
            if first < since:  # the oldest row time in reach, not before the window
                times = [float(self.cts[r]) for r in coarse_rows] + [float(self.fts[r]) for r in fine_rows]
                first = min((t for t in times if since <= t <= last_ts), default=last_ts)
            out = [(first, last_v)]
            if last_ts > first:
                out.append((last_ts, last_v))
            return out
        out = []
        if self.ccap > 0 and (fine_start is None or fine_start > since):
            for r in coarse_rows:
                t, v = float(self.cts[r]), _digits7(self.cv[r, vp])
                if t >= since and (fine_start is None or t < fine_start) and v == v:
                    out.append((t, v))
        for r in fine_rows:
            t, v = float(self.fts[r]), float(self.fv[r, vp])
            if t >= since and v == v:
                out.append((t, v))
        if last_ts >= since and (not out or out[-1][0] < last_ts):
            out.append((last_ts, last_v))  # read in a row without it (NaN there) or after the rings' reach
        return out

    def nbytes(self) -> int:
        return int(self.fv.nbytes + self.cv.nbytes + self.fts.nbytes + self.cts.nbytes + self.last.nbytes * 3
                   + self.vpos.nbytes + self.vcols.nbytes)


def _digits7(v: Any) -> float:
    """A float32 of the coarse ring as the decimal it stands for (700.123, not 700.1229858398438)."""
    x = float(v)
    return float(f"{x:.7g}") if x == x else x


MAX_BLOCKS = 4  # column layouts kept per node (a GPU falling off the bus changes the layout)


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
        self._blocks: dict[str, dict[Any, Block]] = {}  # node -> layout key -> Block (columnar batches)

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
            lk = s.lk if type(s) is KeyedSample else None
            if lk is None:
                lab = s.labels
                lk = labels_key(lab) if lab else ()
            key = (s.metric, s.gpu, lk)
            ring = per.get(key)
            if ring is None:
                ring = per[key] = Ring(cap, ccap, step)
            ring.add(s.value, s.ts)
            n += 1
        return n

    def add_columns(self, node: str, cols: Columns) -> int:
        """Write a columnar batch's rows (:class:`redfleet.telemetry.columns.Columns`). Returns the values written."""
        lay = cols.layout
        if self.metrics is not None:  # a filtered store: the kept metrics, one sample at a time (not the hot path)
            n = 0
            for r, ts in enumerate(cols.ts.tolist()):
                for c, v in enumerate(cols.values[r].tolist()):
                    if v == v and lay.metric_of[c] in self.metrics:
                        self.add(node, lay.metric_of[c], v, ts, lay.gpu_of[c])
                        n += 1
            return n
        per = self._blocks.get(node)
        if per is None:
            per = self._blocks[node] = {}
        blk = per.get(lay.key)
        if blk is None:
            if len(per) >= MAX_BLOCKS:
                del per[min(per, key=lambda k: per[k].newest)]
            blk = per[lay.key] = Block(lay, self.capacity, self.coarse_capacity, self.coarse_step)
        values = cols.values
        if not blk.add_rows(cols.ts, values):
            for r, ts in enumerate(cols.ts.tolist()):
                blk.add_row(ts, values[r])
        return cols.count

    def _block_col(self, node: str, metric: str, gpu: int | None, labels: Mapping[str, str] | None
                   ) -> tuple[Block, int] | None:
        """The block column of (metric, gpu) read most recently, if any."""
        per = self._blocks.get(node)
        if not per or labels or gpu is None:
            return None
        best: tuple[Block, int] | None = None
        for blk in per.values():
            c = blk.layout.col.get((metric, gpu))
            if c is None or blk.last_ts[c] == -np.inf:
                continue
            if best is None or blk.last_ts[c] > best[0].last_ts[best[1]]:
                best = (blk, c)
        return best

    def drop_node(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._blocks.pop(node, None)

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
        bc = self._block_col(node, metric, gpu, labels)
        since = now - seconds
        if self.max_age is not None:
            since = max(since, now - self.max_age)
        if bc is not None and (ring is None or bc[0].last_ts[bc[1]] >= ring.last_ts):
            return [p for p in bc[0].points(bc[1], since) if p[0] <= now]
        if ring is None:
            return []
        return [p for p in ring.points(since) if p[0] <= now]

    def latest(self, node: str, metric: str, gpu: int | None = None,
               labels: Mapping[str, str] | None = None) -> tuple[float, float] | None:
        ring = self._get(node, metric, gpu, labels)
        bc = self._block_col(node, metric, gpu, labels)
        if bc is not None and (ring is None or bc[0].last_ts[bc[1]] >= ring.last_ts):
            blk, c = bc
            return float(blk.last_ts[c]), float(blk.last[c])
        if ring is None or ring.last_ts == float("-inf"):
            return None
        return ring.last_ts, ring.last_v

    def keys(self, node: str) -> list[SeriesKey]:
        per = self._nodes.get(node, {})
        out = [SeriesKey(node, m, g, lab) for (m, g, lab) in per]
        blocks = self._blocks.get(node)
        if blocks:
            seen = set(per)
            for blk in blocks.values():
                lay = blk.layout
                for c in np.flatnonzero(blk.last_ts > -np.inf).tolist():
                    k = (lay.metric_of[c], lay.gpu_of[c], ())
                    if k not in seen:
                        seen.add(k)
                        out.append(SeriesKey(node, k[0], k[1], ()))
        return out

    def nodes(self) -> list[str]:
        return list(self._nodes) + [n for n in self._blocks if n not in self._nodes]

    def series_count(self) -> int:
        return sum(len(self.keys(n)) for n in self.nodes()) if self._blocks else \
            sum(len(per) for per in self._nodes.values())

    def stats(self) -> dict[str, Any]:
        """Counts and the bytes held in ring buffers (not counting Python object overhead)."""
        series = 0
        data = 0
        for per in self._nodes.values():
            series += len(per)
            for ring in per.values():
                data += ring.nbytes()
        for blocks in self._blocks.values():
            for blk in blocks.values():
                data += blk.nbytes()
        if self._blocks:
            series = self.series_count()
        return {"nodes": len(self.nodes()), "series": series, "buffer_bytes": data}
