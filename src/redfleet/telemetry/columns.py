"""The columnar ingest encoding: a batch's per-GPU samples as one row of numbers per sampling instant.

The JSON ``IngestBatch`` spends a Python object per sample (``{"metric": ..., "value": ..., "ts": ..., "gpu": ...}``,
~320 per 8-GPU node per second). Here the field names and GPU indices travel once per batch and the values as rows:

``POST /api/v1/ingest`` with ``Content-Type: application/vnd.redfleet.ingest-columns+json``: every ``IngestBatch``
field (``samples`` keeps the samples that do not fit the columns: NVMe, labelled series), plus

- ``columns``: ``{"metrics": [DCGM field names], "gpus": [GPU indices]}``; the columns are GPU-major: for each GPU,
  each metric (8 GPUs x 39 fields: 312 columns);
- ``ts``: one time per row (seconds since the epoch), oldest first;
- ``values``: the rows, one JSON array of numbers per ``ts`` (``null``: not read).

The same without JSON numbers: ``Content-Type: application/vnd.redfleet.ingest-columns`` (:data:`BINARY_TYPE`), the
body is a 4-byte little-endian length N, N bytes of the JSON object above without ``values``, then the rows as
little-endian float64, row-major (NaN: not read). Decoding 312 numbers from JSON costs ~25 us, from here ~1 us.

A row per second keeps 1 Hz resolution; an agent may send several rows per push. Serve stores and judges the rows
without a Python object per value (:class:`redfleet.telemetry.series.SeriesStore.add_columns`,
:meth:`redfleet.health.engine.HealthEngine.observe_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

CONTENT_TYPE = "application/vnd.redfleet.ingest-columns+json"
BINARY_TYPE = "application/vnd.redfleet.ingest-columns"
MAX_COLUMNS = 100_000
MAX_ROWS = 3600
COLUMN_FIELDS = ("columns", "ts", "values")


class ColumnsError(ValueError):
    """The columnar part of a batch is malformed (answered 422)."""


class Layout:
    """The columns of a batch: ``metrics`` x ``gpus`` (GPU-major). Interned per distinct (metrics, gpus)."""

    __slots__ = ("col", "gpu_of", "gpus", "key", "metric_of", "metrics", "size")

    def __init__(self, metrics: tuple[str, ...], gpus: tuple[int, ...]) -> None:
        self.metrics = metrics
        self.gpus = gpus
        self.key = (metrics, gpus)
        self.metric_of = [m for _g in gpus for m in metrics]
        self.gpu_of = [g for g in gpus for _m in metrics]
        self.size = len(self.metric_of)
        self.col = {(m, g): i for i, (m, g) in enumerate(zip(self.metric_of, self.gpu_of, strict=True))}


_LAYOUTS: dict[tuple[tuple[str, ...], tuple[int, ...]], Layout] = {}


def layout(metrics: Sequence[str], gpus: Sequence[int]) -> Layout:
    key = (tuple(metrics), tuple(gpus))
    lay = _LAYOUTS.get(key)
    if lay is None:
        if len(_LAYOUTS) > 4096:  # a misbehaving agent sending endless layouts must not grow this forever
            _LAYOUTS.clear()
        lay = _LAYOUTS[key] = Layout(*key)
    return lay


class Columns:
    """Decoded rows: ``ts`` (R,), ``values`` (R, layout.size) float64, NaN where a value was not read."""

    __slots__ = ("count", "layout", "ts", "values")

    def __init__(self, lay: Layout, ts: np.ndarray, values: np.ndarray, count: int | None = None) -> None:
        self.layout = lay
        self.ts = ts
        self.values = values
        if count is None:
            total = float(np.add.reduce(values, axis=None))
            count = values.size if total == total else int(values.size - np.count_nonzero(np.isnan(values)))
        self.count = count  # values read (not NaN)


    def samples(self) -> list[Any]:
        """The values as ``Sample`` objects (for consumers without a columnar path; not the hot path)."""
        from redfleet.model.ingest import Sample

        lay = self.layout
        return [Sample.model_construct(metric=lay.metric_of[c], value=v, ts=ts, gpu=lay.gpu_of[c], labels={})
                for ts, row in zip(self.ts.tolist(), self.values.tolist(), strict=True)
                for c, v in enumerate(row) if v == v]


def unframe(body: bytes) -> tuple[Any, memoryview]:
    """A binary body: (its parsed JSON header, the float64 rows' bytes)."""
    if len(body) < 4:
        raise ColumnsError("a binary columnar body starts with its header's length (4 bytes)")
    n = int.from_bytes(body[:4], "little")
    if n > len(body) - 4:
        raise ColumnsError(f"header length {n} is beyond the body ({len(body)} bytes)")
    view = memoryview(body)
    try:
        doc = orjson.loads(view[4:4 + n])
    except orjson.JSONDecodeError as exc:
        raise ColumnsError(f"header: invalid JSON: {exc}") from None
    return doc, view[4 + n:]


def frame(header: bytes, rows: bytes) -> bytes:
    """A binary body from a JSON header (an object, no ``values``) and the rows as float64 LE bytes."""
    return b"".join((len(header).to_bytes(4, "little"), header, rows))


def split(doc: dict[str, Any], packed: memoryview | bytes | None = None) -> Columns | None:
    """Take the columnar fields out of a parsed body (the rest is an ``IngestBatch``); None when it has none.
    ``packed``: the rows of a binary body (:func:`unframe`)."""
    cols = doc.pop("columns", None)
    ts_raw = doc.pop("ts", None)
    rows = doc.pop("values", None)
    if packed is not None and not len(packed) and cols is None and ts_raw is None:
        packed = None
    if cols is None and ts_raw is None and rows is None and packed is None:
        return None
    if not isinstance(cols, dict):
        raise ColumnsError("columns: an object {metrics: [...], gpus: [...]} is required")
    metrics, gpus = cols.get("metrics"), cols.get("gpus")
    lay = _known(metrics, gpus)  # a layout seen before was checked then
    if lay is None:
        lay = layout(*_check_columns(metrics, gpus))
    width = lay.size
    if not isinstance(ts_raw, list) or not 0 < len(ts_raw) <= MAX_ROWS:
        raise ColumnsError(f"ts: a list of 1 to {MAX_ROWS} times is required")
    if not all(type(t) is float or (type(t) is int and abs(t) < 1e15) for t in ts_raw) or \
            not math.isfinite(math.fsum(ts_raw)):
        raise ColumnsError("ts: finite numbers only")
    ts = np.array(ts_raw, dtype=np.float64)
    nrows = len(ts)
    if (rows is None) == (packed is None):
        raise ColumnsError("values: the rows are required (JSON arrays, or float64 after a binary header)")
    if packed is not None:
        if len(packed) != 8 * nrows * width:
            raise ColumnsError(f"rows: {len(packed)} bytes, {8 * nrows * width} expected ({nrows} rows x "
                               f"{width} columns x 8)")
        values = np.frombuffer(packed, dtype="<f8").reshape(nrows, width)
    else:
        values = _rows(rows, nrows, width)
    total = float(np.add.reduce(values, axis=None))
    if math.isfinite(total):  # the common case, in one pass: no NaN, no infinity
        return Columns(lay, ts, values, values.size)
    if np.isinf(values).any():
        raise ColumnsError("values: infinite numbers are not readings")
    return Columns(lay, ts, values)


def _known(metrics: Any, gpus: Any) -> Layout | None:
    if type(metrics) is not list or type(gpus) is not list:
        return None
    try:
        return _LAYOUTS.get((tuple(metrics), tuple(gpus)))
    except TypeError:  # unhashable items
        return None


def _check_columns(metrics: Any, gpus: Any) -> tuple[list[str], list[int]]:
    if not isinstance(metrics, list) or not all(isinstance(m, str) and 0 < len(m) <= 128 for m in metrics):
        raise ColumnsError("columns.metrics: a list of metric names (1-128 characters) is required")
    if not isinstance(gpus, list) or not all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= 1024
                                             for g in gpus):
        raise ColumnsError("columns.gpus: a list of GPU indices (0-1024) is required")
    if len(set(metrics)) != len(metrics) or len(set(gpus)) != len(gpus):
        raise ColumnsError("columns: metric names and GPU indices must not repeat")
    if len(metrics) * len(gpus) > MAX_COLUMNS:
        raise ColumnsError(f"columns: at most {MAX_COLUMNS} columns")
    return metrics, gpus


def _rows(rows: Any, nrows: int, width: int) -> np.ndarray:
    if not isinstance(rows, list) or len(rows) != nrows:
        raise ColumnsError(f"values: {nrows} rows expected (one per ts)")
    for r in rows:
        if not isinstance(r, list) or len(r) != width:
            raise ColumnsError(f"values: each row has {width} numbers (len(metrics) x len(gpus))")
    try:
        return np.asarray(rows, dtype=np.float64)  # the common case: numbers only
    except (TypeError, ValueError):
        pass
    out = np.empty((nrows, width), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if v is None:
                out[i, j] = np.nan
            elif isinstance(v, int | float) and not isinstance(v, bool):
                out[i, j] = v
            else:
                raise ColumnsError(f"values[{i}][{j}]: a number or null, not {type(v).__name__}")
    return out


# ---- encoding (agents, the simulator's feeder) ----------------------------------------------------------------


def encode(batch: dict[str, Any], metrics: Sequence[str], gpus: Sequence[int], ts: Sequence[float],
           rows: Sequence[Sequence[float | None]], *, binary: bool = True) -> bytes:
    """A columnar body: ``batch`` (an IngestBatch-shaped dict, its ``samples`` the ones outside the columns) plus
    the rows; ``binary``: the :data:`BINARY_TYPE` framing (send it with that Content-Type), else JSON arrays."""
    doc = dict(batch)
    doc["columns"] = {"metrics": list(metrics), "gpus": list(gpus)}
    doc["ts"] = list(ts)
    if binary:
        packed = np.asarray([[np.nan if v is None else v for v in r] for r in rows], dtype="<f8")
        return frame(orjson.dumps(doc), packed.tobytes())
    doc["values"] = [list(r) for r in rows]
    return orjson.dumps(doc)


def from_samples(batch: dict[str, Any]) -> tuple[list[str], list[int], dict[float, list[float | None]],
                                                 list[dict[str, Any]]] | None:
    """Split an IngestBatch-shaped dict's samples into columns: per-GPU samples without labels become
    (metrics, gpus, {ts: row}); the others are returned as they are. None when no sample fits the columns."""
    metrics: dict[str, int] = {}
    gpus: dict[int, int] = {}
    cells: dict[float, dict[tuple[str, int], float]] = {}
    rest: list[dict[str, Any]] = []
    for s in batch.get("samples") or ():
        g = s.get("gpu")
        if g is None or s.get("labels"):
            rest.append(s)
            continue
        m = s["metric"]
        metrics.setdefault(m, len(metrics))
        gpus.setdefault(int(g), len(gpus))
        cells.setdefault(float(s["ts"]), {})[(m, int(g))] = float(s["value"])
    if not cells:
        return None
    ml, gl = list(metrics), sorted(gpus)
    rows = {t: [c.get((m, g)) for g in gl for m in ml] for t, c in sorted(cells.items())}
    return ml, gl, rows, rest


def columnar_body(batch: dict[str, Any], *, binary: bool = True) -> bytes:
    """An IngestBatch-shaped dict as a columnar body (its per-GPU samples in columns); without any to put there,
    the batch alone (an empty row block)."""
    got = from_samples(batch)
    if got is None:
        return frame(orjson.dumps(batch), b"") if binary else orjson.dumps(batch)
    metrics, gpus, rows, rest = got
    return encode({**batch, "samples": rest}, metrics, gpus, list(rows), list(rows.values()), binary=binary)
