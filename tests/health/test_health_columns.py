"""HealthEngine.observe_columns (the columnar ingest path) judges exactly as observe_samples on every value: the
pre-filter only skips values that cannot change a rule's state."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from redfleet.health import HealthEngine, load_rules
from redfleet.sim.inband import DCGM_FIELDS
from redfleet.telemetry.columns import Columns, layout

LAYOUT = layout([m for m, _, _ in DCGM_FIELDS], list(range(8)))


def _rows(steps: int) -> list[tuple[float, np.ndarray]]:
    """A node's 1 Hz readings: noisy gauges, and faults that trip thresholds, counters and hysteresis."""
    rng = random.Random(3)
    vals = np.zeros(LAYOUT.size)
    out = []
    for step in range(steps):
        v = vals.copy()
        for c, (m, g) in enumerate(zip(LAYOUT.metric_of, LAYOUT.gpu_of, strict=True)):
            if m in ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP"):
                v[c] = 60 + rng.randint(0, 3) + (45 if 100 < step < 200 and g == 2 else 0)
            elif m == "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL" and g == 5 and step in (150, 151, 300):
                v[c] = vals[c] + 1
            elif m == "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" and g == 5:
                v[c] = 1.0 if 150 <= step < 280 else 0.0  # a volatile counter, cleared by a GPU reset
            elif m == "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL" and g == 1 and 220 < step < 240:
                v[c] = vals[c] + 30
            elif m == "DCGM_FI_DEV_ROW_REMAP_PENDING" and g == 7:
                v[c] = 1.0 if 250 < step < 260 else 0.0
            elif m == "DCGM_FI_DEV_POWER_USAGE":
                v[c] = rng.random() * 700
        if step in (50, 120):
            v[LAYOUT.col[("DCGM_FI_DEV_GPU_TEMP", 2)]] = np.nan  # a value not read
        vals = np.where(np.isnan(v), vals, v)
        out.append((1000.0 + step, v))
    return out


def _run(mode: str, rows_per_batch: int) -> tuple[list[tuple[float, str, str, tuple[str, ...]]], int]:
    eng = HealthEngine(rules=load_rules(None), clock=lambda: 0.0)
    changes: list[tuple[float, str, str, tuple[str, ...]]] = []
    fed = 0
    rows = _rows(400)
    for i in range(0, len(rows), rows_per_batch):
        part = rows[i:i + rows_per_batch]
        now = part[-1][0]
        if mode == "columns":
            fed += eng.observe_columns("n", Columns(LAYOUT, np.array([t for t, _ in part]),
                                                    np.array([r for _, r in part])), now)
        else:
            for ts, row in part:
                eng.observe_samples("n", [SimpleNamespace(metric=LAYOUT.metric_of[c], value=float(x), ts=ts,
                                                          gpu=LAYOUT.gpu_of[c], labels={})
                                          for c, x in enumerate(row) if x == x], now)
        eng.observe_agent("n", "up", now)
        changes += [(now, ch.old, ch.new, tuple(sorted({r.rule for r in ch.reasons}))) for ch in eng.evaluate(now)]
    return changes, fed


@pytest.mark.parametrize("rows_per_batch", [1, 5])
def test_columns_judge_as_samples(rows_per_batch: int) -> None:
    want, _ = _run("samples", rows_per_batch)
    got, fed = _run("columns", rows_per_batch)
    assert got == want
    seen = {r for _, _, _, rules in want for r in rules}
    assert {"gpu-temp-critical", "gpu-ecc-dbe", "gpu-ecc-dbe-repeat", "nvlink-crc-errors",
            "gpu-row-remap-pending"} <= seen, seen
    assert want[-1][2] == "unhealthy" and any(new == "healthy" for _, _, new, _ in want)
    # the point of it: most values never reach the per-sample path
    assert fed < 400 * LAYOUT.size / 10


def test_a_new_gpu_model_judges_unchanged_values_again() -> None:
    eng = HealthEngine(rules=load_rules(None), clock=lambda: 0.0)
    lay = layout(["DCGM_FI_DEV_GPU_TEMP"], [0])
    eng.observe_columns("n", Columns(lay, np.array([1.0]), np.array([[80.0]])), 1.0)
    assert eng.observe_columns("n", Columns(lay, np.array([2.0]), np.array([[80.0]])), 2.0) == 0
    eng.observe_gpus("n", [SimpleNamespace(gpu=0, model="NVIDIA H100 80GB HBM3", pci_bus_id=None)], 1)
    assert eng.observe_columns("n", Columns(lay, np.array([3.0]), np.array([[80.0]])), 3.0) == 1
