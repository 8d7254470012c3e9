"""SeriesStore: ring buffers per (node, metric, gpu, labels), two tiers, bounded memory."""

from __future__ import annotations

import pytest

from redfleet.model.ingest import Sample
from redfleet.telemetry.series import SeriesKey, SeriesStore


def test_add_window_latest_and_keys():
    s = SeriesStore(capacity=100)
    for t in range(10):
        s.add("n1", "temp", 50 + t, float(t), gpu=0)
        s.add("n1", "temp", 70 + t, float(t), gpu=1)
    s.add("n1", "redfish_temperature", 24.0, 5.0, labels={"sensor": "Inlet", "context": "Intake"})
    assert s.window("n1", "temp", 3, now=9.0, gpu=0) == [(6.0, 56.0), (7.0, 57.0), (8.0, 58.0), (9.0, 59.0)]
    assert s.latest("n1", "temp", gpu=1) == (9.0, 79.0)
    assert s.latest("n1", "temp", gpu=2) is None and s.latest("n2", "temp") is None
    assert s.window("n1", "temp", 100, now=4.0, gpu=0)[-1] == (4.0, 54.0)  # nothing after now
    # labels are a key, in any order
    assert s.latest("n1", "redfish_temperature", labels={"context": "Intake", "sensor": "Inlet"}) == (5.0, 24.0)
    assert SeriesKey("n1", "redfish_temperature", None, (("context", "Intake"), ("sensor", "Inlet"))) in s.keys("n1")
    assert s.nodes() == ["n1"] and s.series_count() == 3


def test_add_many_takes_ingest_samples():
    s = SeriesStore()
    n = s.add_many("n", [Sample(metric="m", value=i, ts=float(i), gpu=3, labels={"nvlink": "2"}) for i in range(5)])
    assert n == 5
    assert [v for _, v in s.window("n", "m", 10, 4.0, gpu=3, labels={"nvlink": "2"})] == [0, 1, 2, 3, 4]


def test_ring_wraps_and_coarse_tier_answers_older_windows():
    s = SeriesStore(capacity=60, coarse_step=10.0, coarse_capacity=60)
    for t in range(0, 1000):  # 1 Hz, always changing
        s.add("n", "power", float(t), float(t))
    fine = s.window("n", "power", 59, now=999.0)
    assert len(fine) == 60 and fine[0] == (940.0, 940.0)  # the last 60 s at full resolution
    pts = s.window("n", "power", 600, now=999.0)
    ts = [p[0] for p in pts]
    assert ts == sorted(ts) and ts[0] >= 399.0
    older = [p for p in pts if p[0] < 940]
    assert older and all(p[0] % 10 == 9 for p in older), "coarse points: the last sample of each 10 s step"
    assert len(pts) == len(older) + 60
    assert s.window("n", "power", 2000, now=999.0)[0][0] >= 999 - 600  # coarse ring holds 10 minutes


def test_unchanged_values_are_coalesced_but_latest_moves():
    s = SeriesStore(capacity=120, coarse_step=10.0)
    for t in range(0, 100):
        s.add("n", "dbe", 0.0, float(t))
    pts = s.window("n", "dbe", 200, now=99.0)
    assert s.latest("n", "dbe") == (99.0, 0.0)
    assert pts[-1] == (99.0, 0.0) and len(pts) <= 12  # one stored point per 10 s + the latest
    s.add("n", "dbe", 1.0, 100.0)
    assert s.window("n", "dbe", 1.5, now=100.0) == [(99.0, 0.0), (100.0, 1.0)]


def test_out_of_order_samples_are_dropped_and_memory_is_bounded():
    s = SeriesStore(capacity=50, coarse_capacity=20)
    s.add("n", "m", 1.0, 10.0)
    s.add("n", "m", 2.0, 5.0)
    assert s.latest("n", "m") == (10.0, 1.0)
    for t in range(20_000):
        s.add("n", "m", float(t % 7), 11.0 + t)
    st = s.stats()
    assert st["series"] == 1
    assert st["buffer_bytes"] <= (50 + 20) * 16 * 1.2  # array over-allocation at most ~20 %


def test_max_age_and_bad_arguments():
    s = SeriesStore(max_age=30)
    for t in range(100):
        s.add("n", "m", 1.0 + t, float(t))
    assert s.window("n", "m", 1000, now=99.0)[0][0] >= 69.0
    with pytest.raises(ValueError, match="capacity"):
        SeriesStore(capacity=0)
    with pytest.raises(ValueError, match="coarse_step"):
        SeriesStore(coarse_step=0)
    s.drop_node("n")
    assert s.nodes() == []


def test_metrics_filter_keeps_only_the_named_metrics():
    s = SeriesStore(metrics=["temp"])
    assert s.add_many("n", [Sample(metric="temp", value=1, ts=1.0), Sample(metric="util", value=2, ts=1.0)]) == 1
    s.add("n", "util", 3.0, 2.0)
    assert s.latest("n", "temp") == (1.0, 1.0) and s.latest("n", "util") is None
