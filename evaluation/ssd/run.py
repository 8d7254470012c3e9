"""SSD failure-prediction evaluation (run on demand): ``.venv/bin/python evaluation/ssd/run.py [--drives N]``.

A. Alibaba failed drives (``../shared/ssd/alibaba_ssd_failure_tag.csv.zip``, 18,387 SATA SSDs, SMART at
   failure): map the ATA attributes to NVMe/OCP fields, score each snapshot, report the share rated WATCH or
   worse — overall and split by whether any SMART precursor was present — for redfleet and two baselines.
B. Time-ordered fleet months: a healthy NVMe population generated from published field distributions (see
   ``healthy_population``), weekly samples; each month the drives failing that month (0.1 % of the fleet) are
   added — (B1) real Alibaba failures from that calendar month (their SMART at failure), (B2) simulator
   failure paths (``DriveModel``) scored with their history. Per month: FPR, recall, precision@k, alert
   precision; 2018 and 2019 reported apart (thresholds were fixed before 2019 was looked at).

Writes ``evaluation/ssd/results.json`` and prints the tables that README.md quotes.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import math
import random
import statistics
import sys
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redfleet.paths import shared_dir
from redfleet.predict import DriveModel
from redfleet.predict.features import extract, project_days
from redfleet.predict.scoring import Thresholds, point, score_features

HERE = Path(__file__).resolve().parent
SPARE_THRESH = 10  # NVMe Available Spare Threshold assumed for mapped drives (typical vendor default)

# ------------------------------------------------------------------------------------------------------------
# A. Alibaba: ATA attributes -> NVMe 02h / OCP C0h fields
# ------------------------------------------------------------------------------------------------------------
# (NVMe/OCP field, from which Alibaba column(s), how) — README.md has the same table with the reasoning.
MAPPING_DOC = [
    ("smart.avail_spare", "n_blocks (S170/S180 available reserved space, normalized)", "clipped to 0..100"),
    ("smart.spare_thresh", "—", f"{SPARE_THRESH} (assumed)"),
    ("smart.percent_used", "n_wearout (S173/S177/S233 wear indicator, 100 = new)",
     "100 − n_wearout; n_wearout = 1 (the ATA floor) → 100"),
    ("smart.critical_warning", "derived", "bit 0 when avail_spare < spare_thresh; other bits unknown → 0"),
    ("smart.media_errors", "r_187 + r_184 + r_197", "reported uncorrectable + end-to-end + pending"),
    ("smart.power_on_hours / power_cycles / unsafe_shutdowns", "r_9 / r_12 / r_174", "as is"),
    ("smart.data_units_written / read", "r_241 / r_242 (LBAs)", "× 512 / 512 000"),
    ("ocp.bad_user_nand_blocks_raw", "r_5, r_program, r_erase", "max(r_5, r_program + r_erase)"),
    ("ocp.bad_user_nand_blocks_normalized", "n_5", "clipped to 0..100"),
    ("ocp.uncorrectable_read_errors", "r_187 + r_197", "reported uncorrectable + current pending"),
    ("ocp.end_to_end_detected_errors", "r_184", "as is"),
    ("ocp.soft_ecc_error_count", "r_195 (hardware ECC recovered)", "as is (vendor-scaled; trend-only rule)"),
    ("ocp.pcie_correctable_errors", "r_199 + r_183 (CRC errors + link downshifts)", "interface errors"),
    ("ocp.capacitor_health", "n_175 (power-loss protection, normalized)", "as is when present"),
]
PRECURSOR_COUNTERS = ("r_5", "r_program", "r_erase", "r_187", "r_197", "r_184", "r_183", "r_199")


def _num(row: Mapping[str, str], key: str) -> float | None:
    value = row.get(key, "")
    if value in ("", None):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _int(row: Mapping[str, str], key: str) -> int:
    v = _num(row, key)
    return int(v) if v is not None and v > 0 else 0


def map_alibaba(row: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    n_blocks = _num(row, "n_blocks")
    spare = int(min(100, max(0, n_blocks))) if n_blocks is not None else 100
    wear = _num(row, "n_wearout")
    # ATA normalized values bottom out at 1: a wear indicator of 1 means the rated life is used up
    used = (100 if wear <= 1 else int(max(0, 100 - wear))) if wear is not None else 0
    smart: dict[str, Any] = {
        "critical_warning": 0x01 if spare < SPARE_THRESH else 0,
        "avail_spare": spare,
        "spare_thresh": SPARE_THRESH,
        "percent_used": used,
        "media_errors": _int(row, "r_187") + _int(row, "r_184") + _int(row, "r_197"),
        "power_on_hours": _int(row, "r_9"),
        "power_cycles": _int(row, "r_12"),
        "unsafe_shutdowns": _int(row, "r_174"),
        "data_units_written": _int(row, "r_241") * 512 // 512_000,
        "data_units_read": _int(row, "r_242") * 512 // 512_000,
    }
    n5 = _num(row, "n_5")
    ocp: dict[str, Any] = {
        "bad_user_nand_blocks_raw": max(_int(row, "r_5"), _int(row, "r_program") + _int(row, "r_erase")),
        "bad_user_nand_blocks_normalized": int(min(100, max(0, n5))) if n5 is not None else 100,
        "uncorrectable_read_errors": _int(row, "r_187") + _int(row, "r_197"),
        "end_to_end_detected_errors": _int(row, "r_184"),
        "soft_ecc_error_count": _int(row, "r_195"),
        "pcie_correctable_errors": _int(row, "r_199") + _int(row, "r_183"),
        "log_page_version": 4,
    }
    n175 = _num(row, "n_175")
    if n175 is not None:
        ocp["capacitor_health"] = int(n175)
    return smart, ocp


def has_precursor(row: Mapping[str, str]) -> bool:
    if any(_int(row, k) > 0 for k in PRECURSOR_COUNTERS):
        return True
    n_blocks, wear, plp = _num(row, "n_blocks"), _num(row, "n_wearout"), _num(row, "n_175")
    return (n_blocks is not None and n_blocks < 100) or (wear is not None and wear <= 10) or (
        plp is not None and plp < 100)


def load_alibaba(path: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX"))
        with zf.open(name) as fh:
            return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8")))


# ------------------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------------------
def vendor_static(smart: Mapping[str, Any], ocp: Mapping[str, Any]) -> bool:
    """Static vendor thresholds: any critical warning, spare below its threshold, or percentage used ≥ 100."""
    return bool(smart.get("critical_warning", 0)) or smart.get("avail_spare", 100) < smart.get("spare_thresh", 0) \
        or smart.get("percent_used", 0) >= 100


CEPH_WARN_DAYS = 28  # mgr/devicehealth/warn_threshold default: 4 weeks
CEPH_MARK_OUT_DAYS = 14  # mgr/devicehealth/mark_out_threshold default: 2 weeks


def ceph_devicehealth(points: Sequence[Any]) -> bool:
    """Ceph devicehealth-style: DEVICE_HEALTH is raised when a device is expected to fail within warn_threshold
    (4 weeks). Without a trained predictor the expectation comes from (a) the drive's own health verdict
    (smartctl's self-assessment: for NVMe, a non-zero critical warning) and (b) life expectancy extrapolated
    linearly from the scraped history: days until available spare reaches its threshold or percentage used
    reaches 100 (and: already there)."""
    last = points[-1]
    smart = last.smart
    if smart.get("critical_warning", 0):
        return True
    spare, thresh, used = smart.get("avail_spare"), smart.get("spare_thresh"), smart.get("percent_used")
    if spare is not None and thresh is not None and spare < thresh:
        return True
    if used is not None and used >= 100:
        return True
    if len(points) < 2:
        return False
    f = extract(points)
    days: list[float] = []
    t = f.trends.get("avail_spare")
    if t and t.slope_long < 0 and spare is not None and thresh is not None:
        d = project_days(spare, thresh, t.slope_long)
        if d is not None:
            days.append(d)
    t = f.trends.get("percent_used")
    if t and t.slope_long > 0 and used is not None:
        d = project_days(used, 100, t.slope_long)
        if d is not None:
            days.append(d)
    return bool(days) and min(days) < CEPH_WARN_DAYS


# ------------------------------------------------------------------------------------------------------------
# B. Healthy population from published field distributions
# ------------------------------------------------------------------------------------------------------------
POPULATION_SOURCES = {
    "grown bad blocks": "Schroeder, Lagisetty & Merchant, 'Flash Reliability in Production', FAST 2016: 30–80 % of "
                        "drives develop bad blocks over 4 years; a drive with bad blocks usually has only a few "
                        "(median in the low single digits) with a long tail to hundreds",
    "uncorrectable errors": "same paper: 20–63 % of drives see at least one uncorrectable error in their first 4 "
                            "years, most of them never fail; Meza et al., SIGMETRICS 2015: 4.2–34.1 % of SSDs per "
                            "platform see uncorrectable errors, counts are heavily skewed across drives",
    "wear / write rate": "Maneas et al., FAST 2020 and FAST 2022 (NetApp): most drives consume a small fraction of "
                         "rated life; write rates well below 1 DWPD for most drives, a long tail above",
    "base rate": "Maneas et al., FAST 2020: annual replacement rates 0.07–1.2 %; Han et al. (Alibaba), FAST 2021; "
                 "≈ 0.1 % of drives a month used here",
}


@dataclass
class HealthyDrive:
    """One drive's lifetime as event times (days since its deployment), so any instant can be read exactly."""

    age0: float  # age at evaluation start (days)
    dwpd: float
    bad_block_times: list[float]
    ue_times: list[float]
    ue_sizes: list[int]
    xor_times: list[float]
    soft_ecc_rate: float
    pcie_rate: float
    pcie_bursts: list[tuple[float, int]]
    thermal_times: list[float]
    e2e_times: list[float]
    spare_blocks: int = 2400
    cum_ue: list[int] = field(default_factory=list)

    def state(self, day: float) -> tuple[dict[str, Any], dict[str, Any]]:
        life = self.age0 + day
        bb = bisect.bisect_right(self.bad_block_times, life)
        n_ue = bisect.bisect_right(self.ue_times, life)
        ue = self.cum_ue[n_ue - 1] if n_ue else 0
        xor = bisect.bisect_right(self.xor_times, life)
        e2e = bisect.bisect_right(self.e2e_times, life)
        thermal = bisect.bisect_right(self.thermal_times, life)
        pcie = int(self.pcie_rate * life) + sum(n for t, n in self.pcie_bursts if t <= life)
        used = int(100 * self.dwpd * life / 1826)  # rated endurance: rated DWPD for 5 years
        spare = 100 - math.ceil(100 * bb / self.spare_blocks) if bb else 100
        smart = {"critical_warning": 0, "avail_spare": spare, "spare_thresh": SPARE_THRESH,
                 "percent_used": min(255, used), "media_errors": ue + e2e, "power_on_hours": int(life * 24)}
        ocp = {"bad_user_nand_blocks_raw": bb, "bad_user_nand_blocks_normalized": 100 - 100 * bb // self.spare_blocks,
               "bad_system_nand_blocks_raw": 0, "uncorrectable_read_errors": ue, "xor_recovery_count": xor,
               "soft_ecc_error_count": int(self.soft_ecc_rate * life), "end_to_end_detected_errors": e2e,
               "pcie_correctable_errors": pcie, "thermal_throttling_events": min(255, thermal),
               "current_throttling_status": 0, "max_user_data_erase_count": int(3000 * self.dwpd * life / 1826 * 1.15),
               "capacitor_health": 100, "log_page_version": 4}
        return smart, ocp


def _poisson_times(rng: random.Random, rate: float, start: float, end: float) -> list[float]:
    out: list[float] = []
    if rate <= 0:
        return out
    t = start
    while True:
        t += rng.expovariate(rate)
        if t > end:
            return out
        out.append(t)


def healthy_population(n: int, horizon_days: float, seed: int = 7) -> list[HealthyDrive]:
    """Drives that do not fail within the horizon; parameters read from the papers in POPULATION_SOURCES."""
    rng = random.Random(seed)
    drives = []
    for _ in range(n):
        age0 = rng.uniform(60, 1800)  # deployed 2 months to 5 years before the evaluation starts
        end = age0 + horizon_days
        # writes as a share of the drive's rated daily endurance (1 = rated DWPD): most drives write a small
        # fraction of it, a tail writes more (→ about 1 % of drives past 100 % used at 5 years)
        dwpd = rng.lognormvariate(math.log(0.1), 1.0)
        # grown bad blocks: ~55 % of drives get some within 4 years; count lognormal (median 3, long tail)
        bb_rate = rng.lognormvariate(math.log(3), 1.5) / 1461 if rng.random() < 0.55 else 0.0
        bad_blocks = _poisson_times(rng, bb_rate, 0, end)
        # uncorrectable errors: 35 % of drives prone (→ ~34 % with ≥ 1 UE in 4 years), 1 % heavy-tailed
        kind = rng.random()
        if kind < 0.01:
            ue_rate, mean_size = 1 / 60, 5.0
        elif kind < 0.35:
            ue_rate, mean_size = 1 / 365, 2.0
        else:
            ue_rate, mean_size = 0.0, 1.0
        ue_times = _poisson_times(rng, ue_rate, 0, end)
        ue_sizes = [1 + int(rng.expovariate(1 / (mean_size - 1))) if mean_size > 1 else 1 for _ in ue_times]
        cum, total = [], 0
        for s in ue_sizes:
            total += s
            cum.append(total)
        # XOR recoveries: alongside bad blocks and UE episodes, plus a little background on 10 % of drives
        xor_times = sorted([t for t in bad_blocks if rng.random() < 0.5] + [t for t in ue_times if rng.random() < 0.7]
                           + _poisson_times(rng, 1 / 200 if rng.random() < 0.1 else 0.0, 0, end))
        soft_ecc_rate = rng.lognormvariate(math.log(300), 1.0)
        pcie_rate = rng.lognormvariate(math.log(5), 1.0) if rng.random() < 0.05 else 0.0
        pcie_bursts = [(t, int(rng.lognormvariate(math.log(500), 1.0)))
                       for t in _poisson_times(rng, 1 / 365 if rng.random() < 0.02 else 0.0, 0, end)]
        thermal_times = _poisson_times(rng, rng.uniform(0.01, 0.05) if rng.random() < 0.03 else 0.0, 0, end)
        e2e_times = _poisson_times(rng, 1 / 1461 if rng.random() < 0.005 else 0.0, 0, end)
        drives.append(HealthyDrive(age0, dwpd, bad_blocks, ue_times, ue_sizes, xor_times, soft_ecc_rate, pcie_rate,
                                   pcie_bursts, thermal_times, e2e_times, cum_ue=cum))
    return drives


# ------------------------------------------------------------------------------------------------------------
# Scoring helpers
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Verdicts:
    codes: list[str]
    risk: float
    ours: bool  # WATCH or worse
    ours_replace: bool
    vendor: bool
    ceph: bool


def judge(points: Sequence[Any], th: Thresholds) -> Verdicts:
    f = extract(points, short_days=th.short_days, long_days=th.long_days)
    a = score_features(f, th)
    last = points[-1]
    codes = [r.code for r in a.reasons] if a.recommendation != "MONITOR" else []
    return Verdicts(codes, a.risk, a.recommendation != "MONITOR", a.recommendation == "REPLACE",
                    vendor_static(last.smart, last.ocp), ceph_devicehealth(points))


def precision_at_k(scores: Sequence[float], labels: Sequence[bool], k: int, rng: random.Random) -> float:
    """Share of positives among the k highest scores; ties broken at random (binary baselines tie a lot)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], rng.random()))
    top = order[:k]
    return sum(labels[i] for i in top) / max(1, len(top))


# ------------------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------------------
def run_alibaba(rows: list[dict[str, str]], th: Thresholds) -> dict[str, Any]:
    t0 = datetime(2019, 1, 1, tzinfo=UTC)
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reasons: dict[str, int] = defaultdict(int)
    for row in rows:
        smart, ocp = map_alibaba(row)
        pts = [point(t0, smart, ocp)]
        v = judge(pts, th)
        a_codes = score_features(extract(pts), th).reasons
        for r in a_codes:
            reasons[r.code] += 1
        for g in ("all", "precursor" if has_precursor(row) else "no_precursor", f"model_{row['model']}"):
            c = groups[g]
            c["n"] += 1
            c["ours_watch"] += v.ours
            c["ours_replace"] += v.ours_replace
            c["vendor"] += v.vendor
            c["ceph"] += v.ceph
    out = {g: {k: c[k] for k in ("n", "ours_watch", "ours_replace", "vendor", "ceph")} for g, c in groups.items()}
    for c in out.values():
        n = max(1, c["n"])
        c.update({f"{k}_share": round(c[k] / n, 4) for k in ("ours_watch", "ours_replace", "vendor", "ceph")})
    return {"groups": out, "reason_counts": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def _month_starts(start: datetime, months: int) -> list[datetime]:
    out = []
    y, m = start.year, start.month
    for _ in range(months + 1):
        out.append(datetime(y, m, 1, tzinfo=UTC))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def run_fleet(rows: list[dict[str, str]], th: Thresholds, n_drives: int, seed: int,
              log: Callable[[str], None]) -> dict[str, Any]:
    start = datetime(2018, 1, 1, tzinfo=UTC)
    months = _month_starts(start, 24)
    horizon = (months[-1] - start).days
    healthy = healthy_population(n_drives, horizon, seed)
    rng = random.Random(seed)
    per_month_fail = max(1, round(0.001 * n_drives))
    by_month: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_month[row["failure_time"][:7]].append(row)

    def healthy_points(drive: HealthyDrive, at_day: float) -> list[Any]:
        pts = []
        for w in range(5, -1, -1):  # weekly samples over the last 5 weeks
            d = at_day - 7 * w
            if d < 0:
                continue
            s, o = drive.state(d)
            pts.append(point(start + timedelta(days=d), s, o))
        return pts

    def sim_failure(kind_rng: random.Random, fail_day: float, idx: int) -> tuple[DriveModel, float]:
        r = kind_rng.random()
        path = "wearout" if r < 0.15 else "badblocks" if r < 0.5 else "media"
        m = DriveModel(f"eval-{seed}-{idx}", path, failure_day=fail_day,
                       onset_day=None if path == "wearout" else max(0.0, fail_day - (kind_rng.uniform(25, 90)
                                                                                      if path == "badblocks"
                                                                                      else kind_rng.uniform(1, 14))))
        return m, fail_day

    results: dict[str, list[dict[str, Any]]] = {"B1": [], "B2": []}
    ever_flagged: dict[str, set[int]] = {"ours": set(), "vendor": set(), "ceph": set()}
    sim_idx = 0
    fp_reasons: dict[str, int] = defaultdict(int)  # reasons on healthy drives rated WATCH+ (drive-months)
    lead_times: dict[str, list[float]] = defaultdict(list)
    for mi in range(24):
        m_start, m_end = months[mi], months[mi + 1]
        score_day = (m_start - start).days  # scoring round at the start of the month: no look-ahead
        key = m_start.strftime("%Y-%m")
        t_month = time.time()
        neg = [judge(healthy_points(d, score_day), th) for d in healthy]
        for i, v in enumerate(neg):
            for code in v.codes:
                fp_reasons[code] += 1
            for name, flag in (("ours", v.ours), ("vendor", v.vendor), ("ceph", v.ceph)):
                if flag:
                    ever_flagged[name].add(i)
        # B1: real failures of this calendar month, SMART at failure, scored at this round (levels only)
        pool = by_month.get(key, [])
        real = rng.sample(pool, min(per_month_fail, len(pool)))
        pos_b1 = [judge([point(m_start, *map_alibaba(r))], th) for r in real]
        # B2: simulator drives failing within the month, scored with their history up to this round
        pos_b2 = []
        for _ in range(per_month_fail):
            fail_day = score_day + rng.uniform(0, (m_end - m_start).days)
            model, fd = sim_failure(rng, fail_day, sim_idx)
            sim_idx += 1
            pts = []
            for w in range(5, -1, -1):
                d = score_day - 7 * w
                if d >= 0:
                    s = model.state_at(d)
                    pts.append(point(start + timedelta(days=d), s.smart, s.ocp))
            pos_b2.append(judge(pts, th))
            # lead time: first weekly round (within 120 days before failure) rated WATCH+ / REPLACE
            first_watch = first_replace = None
            d = max(0.0, fd - 120)
            while d < fd:
                hist = [point(start + timedelta(days=x), model.state_at(x).smart, model.state_at(x).ocp)
                        for x in (d - 28, d - 21, d - 14, d - 7, d) if x >= 0]
                a = score_features(extract(hist), th)
                if first_watch is None and a.recommendation != "MONITOR":
                    first_watch = fd - d
                if a.recommendation == "REPLACE":
                    first_replace = fd - d
                    break
                d += 7
            lead_times[f"{model.path}_watch"].append(first_watch if first_watch is not None else 0.0)
            lead_times[f"{model.path}_replace"].append(first_replace if first_replace is not None else 0.0)
        for scen, pos in (("B1", pos_b1), ("B2", pos_b2)):
            allv = neg + pos
            labels = [False] * len(neg) + [True] * len(pos)
            row: dict[str, Any] = {"month": key, "healthy": len(neg), "failing": len(pos)}
            for name, get_flag, get_score in (
                ("ours", lambda v: v.ours, lambda v: v.risk),
                ("vendor", lambda v: v.vendor, lambda v: float(v.vendor)),
                ("ceph", lambda v: v.ceph, lambda v: float(v.ceph)),
            ):
                fp = sum(get_flag(v) for v in neg)
                tp = sum(get_flag(v) for v in pos)
                scores = [get_score(v) for v in allv]
                row[name] = {
                    "fpr": fp / len(neg),
                    "recall": tp / max(1, len(pos)),
                    "alert_precision": tp / (tp + fp) if tp + fp else 0.0,
                    "p_at_k": precision_at_k(scores, labels, len(pos), rng),
                    "p_at_50": precision_at_k(scores, labels, 50, rng),
                    "flagged": fp + tp,
                }
            row["ours"]["replace_fpr"] = sum(v.ours_replace for v in neg) / len(neg)
            results[scen].append(row)
        log(f"  {key}: scored {len(neg)} healthy + {len(pos_b1)}/{len(pos_b2)} failing in "
            f"{time.time() - t_month:.1f}s")
    summary: dict[str, Any] = {}
    for scen, rows_ in results.items():
        summary[scen] = {}
        for period, sel in (("2018", [r for r in rows_ if r["month"] < "2019"]),
                            ("2019", [r for r in rows_ if r["month"] >= "2019"]), ("all", rows_)):
            summary[scen][period] = {
                name: {metric: round(statistics.mean(r[name][metric] for r in sel), 5)
                       for metric in ("fpr", "recall", "alert_precision", "p_at_k", "p_at_50")}
                for name in ("ours", "vendor", "ceph")
            }
            summary[scen][period]["ours"]["replace_fpr"] = round(
                statistics.mean(r["ours"]["replace_fpr"] for r in sel), 5)
    summary["ever_flagged_healthy_share"] = {k: round(len(v) / n_drives, 5) for k, v in ever_flagged.items()}
    summary["lead_time_days_B2"] = {
        k: {"n": len(v), "median": round(statistics.median(v), 1),
            "share_flagged": round(sum(x > 0 for x in v) / len(v), 3)}
        for k, v in sorted(lead_times.items())
    }
    summary["false_positive_reasons"] = dict(sorted(fp_reasons.items(), key=lambda kv: -kv[1]))
    summary["per_month_failures"] = per_month_fail
    summary["healthy_drives"] = n_drives
    return {"summary": summary, "months": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=10_000, help="healthy drives in the fleet (default 10000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=None, help="alibaba_ssd_failure_tag.csv.zip (default ../shared/ssd)")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--skip-fleet", action="store_true", help="only part A")
    args = ap.parse_args(argv)
    data = args.data or shared_dir() / "ssd" / "alibaba_ssd_failure_tag.csv.zip"
    if not data.is_file():
        print(f"missing {data}: the Alibaba failure data (see ../shared/README.md)", file=sys.stderr)
        return 2
    th = Thresholds()
    rows = load_alibaba(data)
    print(f"A. Alibaba failed drives: {len(rows)} rows")
    a = run_alibaba(rows, th)
    for g in ("all", "precursor", "no_precursor"):
        c = a["groups"][g]
        print(f"  {g:13s} n={c['n']:6d}  redfleet WATCH+ {c['ours_watch_share']:.1%}  (REPLACE "
              f"{c['ours_replace_share']:.1%})  vendor {c['vendor_share']:.1%}  ceph {c['ceph_share']:.1%}")
    out: dict[str, Any] = {"alibaba": a, "mapping": MAPPING_DOC, "population_sources": POPULATION_SOURCES,
                           "thresholds": th.model_dump()}
    if not args.skip_fleet:
        print(f"B. time-ordered fleet: {args.drives} healthy drives, 24 months")
        b = run_fleet(rows, th, args.drives, args.seed, print)
        out["fleet"] = b
        s = b["summary"]
        for scen in ("B1", "B2"):
            for period in ("2018", "2019", "all"):
                for name in ("ours", "vendor", "ceph"):
                    m = s[scen][period][name]
                    print(f"  {scen} {period} {name:6s} FPR {m['fpr']:.3%}  recall {m['recall']:.1%}  "
                          f"alert-precision {m['alert_precision']:.1%}  P@k {m['p_at_k']:.1%}  P@50 {m['p_at_50']:.1%}")
        print(f"  healthy drives ever flagged in 24 months: {s['ever_flagged_healthy_share']}")
        print(f"  B2 lead times: {s['lead_time_days_B2']}")
        print(f"  reasons on healthy drives rated WATCH+ (drive-months): {s['false_positive_reasons']}")
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
