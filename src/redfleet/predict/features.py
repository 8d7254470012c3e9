"""Features of one drive's health history: the latest levels and, per counter, slope and acceleration over days.

A history is a list of points (time + 02h fields + C0h fields), oldest first; a single point gives levels
only. Counters that went down (a drive swapped under the same id, a cleared PCIe counter) are treated as
restarted: growth is counted from the lower value.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Protocol

# metric name -> (log, key) where it is read; the first present wins.
METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "critical_warning": (("smart", "critical_warning"),),
    "avail_spare": (("smart", "avail_spare"),),
    "spare_thresh": (("smart", "spare_thresh"),),
    "percent_used": (("smart", "percent_used"),),
    "media_errors": (("smart", "media_errors"),),
    "err_log_entries": (("smart", "num_err_log_entries"),),
    "temperature_k": (("smart", "temperature"),),
    "bad_user_blocks": (("ocp", "bad_user_nand_blocks_raw"),),
    "bad_user_blocks_norm": (("ocp", "bad_user_nand_blocks_normalized"),),
    "bad_system_blocks": (("ocp", "bad_system_nand_blocks_raw"),),
    "bad_system_blocks_norm": (("ocp", "bad_system_nand_blocks_normalized"),),
    "xor_recovery": (("ocp", "xor_recovery_count"),),
    "uncorrectable": (("ocp", "uncorrectable_read_errors"),),
    "soft_ecc": (("ocp", "soft_ecc_error_count"),),
    "e2e_detected": (("ocp", "end_to_end_detected_errors"),),
    "e2e_corrected": (("ocp", "end_to_end_corrected_errors"),),
    "max_erase": (("ocp", "max_user_data_erase_count"),),
    "min_erase": (("ocp", "min_user_data_erase_count"),),
    "avg_erase": (("ocp", "nand_avg_erase_count"),),
    "thermal_events": (("ocp", "thermal_throttling_events"), ("smart", "thm_temp1_trans_count")),
    "throttling_status": (("ocp", "current_throttling_status"),),
    "pcie_correctable": (("ocp", "pcie_correctable_errors"),),
    "capacitor_health": (("ocp", "capacitor_health"),),
    "media_dies_offline": (("ocp", "media_dies_offline"),),
    "die_failure_tolerance": (("ocp", "total_die_failure_tolerance"),),
    "command_timeouts": (("ocp", "command_timeouts"),),
    "power_on_hours": (("smart", "power_on_hours"),),
}

# Counters whose growth over time is a feature.
COUNTERS = ("bad_user_blocks", "bad_system_blocks", "xor_recovery", "uncorrectable", "soft_ecc", "e2e_detected",
            "media_errors", "pcie_correctable", "thermal_events", "command_timeouts", "media_dies_offline")
# Levels whose trend (down for spare, up for wear) is projected forward.
GAUGES = ("avail_spare", "percent_used", "max_erase")


class PointLike(Protocol):
    """Anything with a time and the two field dicts (store rows, loader samples, scoring.point())."""

    @property
    def collected_at(self) -> datetime: ...

    @property
    def smart(self) -> Mapping[str, Any]: ...

    @property
    def ocp(self) -> Mapping[str, Any]: ...


@dataclass
class Trend:
    """Growth of one metric: per day over the short and long windows, and acceleration (per day²)."""

    delta_short: float = 0.0  # growth within the short window
    slope_short: float = 0.0  # per day, short window
    slope_long: float = 0.0  # per day, long window
    accel: float = 0.0  # (slope over last short window − slope over the short window before it) / short days
    days: float = 0.0  # span of history actually covered by the long window


@dataclass
class Features:
    levels: dict[str, float | None]
    trends: dict[str, Trend] = field(default_factory=dict)
    span_days: float = 0.0
    points: int = 0
    as_of: datetime | None = None
    has_ocp: bool = False
    notes: list[str] = field(default_factory=list)

    def level(self, name: str, default: float = 0.0) -> float:
        value = self.levels.get(name)
        return default if value is None else float(value)


def read_metric(smart: Mapping[str, Any], ocp: Mapping[str, Any], name: str) -> float | None:
    for log, key in METRICS[name]:
        source = smart if log == "smart" else ocp
        value = source.get(key) if source else None
        if value is None:
            continue
        if isinstance(value, Mapping):  # nvme-cli's verbose critical_warning or a {"hi","lo"} pair
            value = value.get("value", (int(value.get("hi", 0)) << 64) | int(value.get("lo", 0)))
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _index_at_or_before(times: Sequence[float], t: float) -> int:
    """Index of the last sample at or before day t; 0 when every sample is later (the window starts there)."""
    return max(bisect_right(times, t + 1e-9) - 1, 0)


def _restart_corrected(values: Sequence[float]) -> list[float]:
    """Running total of a counter's growth; a drop means the counter restarted, so growth resumes from the
    lower value (the drop itself is not negative growth)."""
    out = [0.0]
    for a, b in pairwise(values):
        out.append(out[-1] + (b - a if b >= a else b))
    return out


def extract(points: Sequence[PointLike], *, short_days: float = 7.0, long_days: float = 30.0) -> Features:
    """Features of a history (oldest first; unsorted input is sorted)."""
    if not points:
        raise ValueError("no health samples")
    pts = sorted(points, key=lambda p: p.collected_at)
    last = pts[-1]
    t0 = pts[0].collected_at
    all_days = [(p.collected_at - t0).total_seconds() / 86400 for p in pts]
    now = all_days[-1]
    # Only the windows matter: keep the samples inside them and the last one before them.
    first = _index_at_or_before(all_days, now - max(long_days, 2 * short_days))
    pts, days = pts[first:], all_days[first:]
    levels: dict[str, float | None] = {}
    for name in METRICS:  # the latest reading of each metric (a sample may carry only one of the two logs)
        levels[name] = None
        for p, d in zip(reversed(pts), reversed(days), strict=True):
            if now - d > long_days:
                break
            value = read_metric(p.smart, p.ocp, name)
            if value is not None:
                levels[name] = value
                break
    has_ocp = any(p.ocp for p, d in zip(pts, days, strict=True) if now - d <= long_days)
    feats = Features(levels=levels, span_days=now, points=len(all_days), as_of=last.collected_at, has_ocp=has_ocp)
    for name in (*COUNTERS, *GAUGES):
        times: list[float] = []
        values: list[float] = []
        for d, p in zip(days, pts, strict=True):
            v = read_metric(p.smart, p.ocp, name)
            if v is not None:
                times.append(d)
                values.append(v)
        if len(values) < 2:
            continue
        trend = Trend()
        j_now = len(values) - 1
        j_short = _index_at_or_before(times, now - short_days)
        j_long = _index_at_or_before(times, now - long_days)
        span_s, span_l = now - times[j_short], now - times[j_long]
        trend.days = span_l
        if name in GAUGES:  # not counters: plain differences, no restart logic
            trend.delta_short = values[j_now] - values[j_short]
            trend.slope_short = trend.delta_short / span_s if span_s > 0 else 0.0
            trend.slope_long = (values[j_now] - values[j_long]) / span_l if span_l > 0 else 0.0
        else:
            cum = _restart_corrected(values)
            j_prior = _index_at_or_before(times, now - 2 * short_days)
            span_p = times[j_short] - times[j_prior]
            trend.delta_short = cum[j_now] - cum[j_short]
            trend.slope_short = trend.delta_short / span_s if span_s >= 0.5 else 0.0
            trend.slope_long = (cum[j_now] - cum[j_long]) / span_l if span_l >= 0.5 else 0.0
            if span_p >= 0.5 and span_s >= 0.5:
                prior = (cum[j_short] - cum[j_prior]) / span_p
                trend.accel = (trend.slope_short - prior) / short_days
            if any(b < a for a, b in pairwise(values)):
                feats.notes.append(f"{name} went down at some point: counted as a restarted counter")
        feats.trends[name] = trend
    return feats


def project_days(current: float, target: float, slope: float) -> float | None:
    """Days until a level moving at ``slope`` per day reaches ``target`` (None: not heading there)."""
    if slope == 0:
        return None
    days = (target - current) / slope
    return days if days >= 0 else None
