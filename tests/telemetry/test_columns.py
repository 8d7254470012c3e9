"""The columnar ingest encoding: decoding (JSON rows and the binary framing), its refusals, and the series store's
column blocks answering window/latest/keys as the per-sample rings do."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from redfleet.telemetry.columns import (
    Columns,
    ColumnsError,
    columnar_body,
    encode,
    frame,
    layout,
    split,
    unframe,
)
from redfleet.telemetry.series import SeriesStore


def _batch(ts: float, gpus: int = 2) -> dict:
    samples = [{"metric": m, "value": v + g, "ts": ts, "gpu": g} for g in range(gpus)
               for m, v in (("DCGM_FI_DEV_GPU_TEMP", 40.0), ("DCGM_FI_DEV_POWER_USAGE", 300.5))]
    samples.append({"metric": "REDFLEET_NVME_PERCENT_USED", "value": 3, "ts": ts, "labels": {"device": "nvme0"}})
    return {"node": "n1", "sent_at": ts, "samples": samples}


@pytest.mark.parametrize("binary", [True, False])
def test_samples_round_trip_through_both_encodings(binary: bool) -> None:
    body = columnar_body(_batch(100.0), binary=binary)
    doc, packed = unframe(body) if binary else (orjson.loads(body), None)
    cols = split(doc, packed)
    assert cols is not None and cols.count == 4
    assert cols.layout.metrics == ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE") and cols.layout.gpus == (0, 1)
    assert cols.ts.tolist() == [100.0]
    assert cols.values.tolist() == [[40.0, 300.5, 41.0, 301.5]]  # GPU-major
    # what did not fit the columns stays a sample; the columns are gone from the batch
    assert [s["metric"] for s in doc["samples"]] == ["REDFLEET_NVME_PERCENT_USED"]
    assert "columns" not in doc and "ts" not in doc
    assert sorted((s.metric, s.gpu, s.value) for s in cols.samples()) == sorted(
        (s["metric"], s["gpu"], s["value"]) for s in _batch(100.0)["samples"] if "gpu" in s)


def test_null_and_nan_mean_not_read() -> None:
    doc = orjson.loads(encode({"node": "n"}, ["a", "b"], [0], [1.0, 2.0], [[1.0, None], [None, 5.0]], binary=False))
    cols = split(doc)
    assert cols is not None and cols.count == 2
    assert math.isnan(cols.values[0][1]) and math.isnan(cols.values[1][0])
    doc, packed = unframe(encode({"node": "n"}, ["a", "b"], [0], [1.0], [[None, 7.0]]))
    cols = split(doc, packed)
    assert cols is not None and cols.count == 1


@pytest.mark.parametrize("change,message", [
    ({"columns": None}, "columns"),
    ({"columns": {"metrics": ["a", "a"], "gpus": [0]}}, "repeat"),
    ({"columns": {"metrics": ["a"], "gpus": [-1]}}, "GPU indices"),
    ({"columns": {"metrics": [""], "gpus": [0]}}, "metric names"),
    ({"ts": []}, "ts"),
    ({"ts": ["x"]}, "numbers"),
    ({"values": [[1.0]]}, "each row"),
    ({"values": [[1.0, 2.0], [3.0, 4.0]]}, "rows expected"),
    ({"values": [[1.0, "hot"]]}, "number or null"),
    ({"values": [[1.0, 1e400]]}, "infinite"),
])
def test_malformed_columns_are_refused(change: dict, message: str) -> None:
    doc = {"node": "n", "columns": {"metrics": ["a", "b"], "gpus": [0]}, "ts": [1.0], "values": [[1.0, 2.0]]}
    doc.update(change)
    with pytest.raises(ColumnsError, match=message):
        split(doc)


def test_binary_rows_must_match_the_header() -> None:
    body = encode({"node": "n"}, ["a", "b"], [0, 1], [1.0], [[1.0, 2.0, 3.0, 4.0]])
    doc, packed = unframe(body[:-8])
    with pytest.raises(ColumnsError, match="bytes"):
        split(doc, packed)
    with pytest.raises(ColumnsError, match="beyond"):
        unframe(b"\xff\xff\x00\x00{}")
    doc, packed = unframe(frame(b'{"node": "n"}', b""))
    assert split(doc, packed) is None  # a batch without columns


def _feed(store: SeriesStore, ref: SeriesStore, rows: list[tuple[float, list[float]]], batch: int) -> None:
    lay = layout(["temp", "ecc", "power"], [0, 1])
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        store.add_columns("n", Columns(lay, np.array([t for t, _ in part]), np.array([r for _, r in part])))
    for t, row in rows:
        for c, v in enumerate(row):
            if v == v:
                ref.add("n", lay.metric_of[c], v, t, gpu=lay.gpu_of[c])


def _value_at(points: list[tuple[float, float]], t: float) -> float | None:
    v = None
    for ts, x in points:
        if ts <= t:
            v = x
    return v


@pytest.mark.parametrize("batch", [1, 5])
def test_column_blocks_answer_like_the_rings(batch: int) -> None:
    """Same data as columns and as samples: the same latest values and, as step functions, the same windows
    (the coarse tier of a column block keeps each 10 s step's last row, so only its timing within a step of
    history older than the fine ring may differ)."""
    s, ref = SeriesStore(), SeriesStore()
    rows = [(float(t), [50.0 + t % 7, 0.0 if t < 500 else 1.0, float(t), 60.0, 0.0 if t != 300 else math.nan,
                        2.0 * t]) for t in range(1000)]
    _feed(s, ref, rows, batch)
    for metric in ("temp", "ecc", "power"):
        for gpu in (0, 1):
            assert s.latest("n", metric, gpu=gpu) == ref.latest("n", metric, gpu=gpu)
            fine = s.window("n", metric, 59, 999.0, gpu=gpu)
            want = ref.window("n", metric, 59, 999.0, gpu=gpu)
            assert fine[-1] == want[-1]
            assert all(_value_at(fine, t) == _value_at(want, t) for t, _ in want if t >= fine[0][0])
            wide = s.window("n", metric, 600, 999.0, gpu=gpu)
            assert [p[0] for p in wide] == sorted(p[0] for p in wide) and wide[0][0] >= 399.0
    assert len(s.window("n", "power", 59, 999.0, gpu=0)) == 60  # the last minute at 1 Hz
    assert s.window("n", "temp", 5, 999.0, gpu=1) == [(994.0, 60.0), (999.0, 60.0)]  # never changed: its ends
    assert sorted(s.keys("n"), key=str) == sorted(ref.keys("n"), key=str)
    assert s.series_count() == 6 and s.stats()["buffer_bytes"] > 0


def test_column_blocks_drop_old_rows_and_mix_with_samples() -> None:
    s = SeriesStore()
    lay = layout(["temp"], [0])
    s.add_columns("n", Columns(lay, np.array([10.0, 11.0]), np.array([[1.0], [2.0]])))
    s.add_columns("n", Columns(lay, np.array([5.0]), np.array([[9.0]])))  # older than what we have: dropped
    assert s.latest("n", "temp", gpu=0) == (11.0, 2.0)
    s.add("n", "temp", 3.0, 12.0, gpu=0)  # the same series as a sample, newer: it answers
    assert s.latest("n", "temp", gpu=0) == (12.0, 3.0)
    s.drop_node("n")
    assert s.latest("n", "temp", gpu=0) is None and s.nodes() == []


def test_older_history_keeps_the_decimals_sent() -> None:
    """The coarse tier holds float32: points older than the fine ring come back as the decimals that were sent."""
    s = SeriesStore(capacity=10, coarse_step=10.0)
    lay = layout(["power"], [0])
    sent = {float(t): round(700.123 + (t % 3) * 0.111, 3) for t in range(200)}
    for t, v in sent.items():
        s.add_columns("n", Columns(lay, np.array([t]), np.array([[v]])))
    pts = s.window("n", "power", 300, 199.0, gpu=0)
    older = [p for p in pts if p[0] < 190]
    assert older and all(v == sent[t] for t, v in older), older[:3]
    assert s.latest("n", "power", gpu=0) == (199.0, sent[199.0])
