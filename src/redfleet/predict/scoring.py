"""Risk of a drive failing soon, from its health history: a score 0–1, REPLACE / WATCH / MONITOR, reasons.

Each rule looks at one piece of evidence (a level, a trend or a projection) and, when it fires, contributes a
risk ``r`` and a sentence. The risks combine as independent evidence (noisy-OR: ``1 − Π(1 − r)``), except
that rules about the same underlying signal (e.g. the level and the trend of uncorrectable errors) count
once, with the strongest. The recommendation follows from the combined risk and two cut-offs. Every number
is a field of :class:`Thresholds`, which loads from YAML.

Why these signals: in field studies of datacenter flash, grown bad blocks and uncorrectable errors are the
strongest precursors of drive failure and of replacement (Schroeder, Lagisetty & Merchant, FAST 2016; Meza et
al., SIGMETRICS 2015; Narayanan et al., SYSTOR 2016; Xu et al., Alibaba, FAST 2021); uncorrectable errors
also occur in drives that never fail, so a single one is weak evidence and growth counts more; wear-out
(percentage used, erase counts) matters near and past the rated endurance; the NVMe critical warnings are
the drive's own verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redfleet.predict.features import Features, PointLike, extract, project_days

Recommendation = Literal["REPLACE", "WATCH", "MONITOR"]
SEVERITY: dict[str, int] = {"REPLACE": 2, "WATCH": 1, "MONITOR": 0}


class Thresholds(BaseModel):
    """Every cut-off of the scoring, with the risk each rule contributes when it fires."""

    model_config = ConfigDict(extra="forbid")

    replace_at: float = Field(default=0.75, ge=0, le=1, description="combined risk at or above which: REPLACE")
    watch_at: float = Field(default=0.35, ge=0, le=1, description="combined risk at or above which: WATCH")
    short_days: float = Field(default=7, gt=0, description="short trend window (days)")
    long_days: float = Field(default=30, gt=0, description="long trend window (days)")

    # NVMe critical warnings (the drive's own verdict)
    risk_cw_spare: float = 0.90
    risk_cw_temperature: float = 0.20
    risk_cw_reliability: float = 0.95
    risk_cw_read_only: float = 0.99
    risk_cw_volatile_backup: float = 0.85
    risk_cw_pmr: float = 0.60
    # available spare against its threshold
    spare_margin_watch: float = 10  # points above the threshold
    risk_spare_near: float = 0.45
    spare_margin_low: float = 30
    risk_spare_low: float = 0.15
    spare_projection_days_replace: float = 30
    spare_projection_days_watch: float = 120
    risk_spare_projection_replace: float = 0.80
    risk_spare_projection_watch: float = 0.40
    # wear
    percent_used_watch: float = 100
    risk_percent_used_watch: float = 0.40
    percent_used_notice: float = 90
    risk_percent_used_notice: float = 0.15
    wear_projection_days: float = 60
    risk_wear_projection: float = 0.30
    rated_pe_cycles: float = 3000  # NAND program/erase rating used for the erase-count rule (TLC: 3000)
    erase_ratio_watch: float = 1.0
    risk_erase_watch: float = 0.35
    # bad NAND blocks (grown)
    bad_user_blocks_level: float = 100
    risk_bad_user_blocks_level: float = 0.30
    bad_user_blocks_level_high: float = 1000
    risk_bad_user_blocks_level_high: float = 0.55
    bad_user_norm_watch: float = 80  # normalized % left of the retirement budget
    risk_bad_user_norm: float = 0.45
    bad_blocks_per_day_watch: float = 1.0
    risk_bad_blocks_rate: float = 0.45
    bad_blocks_per_day_replace: float = 10.0
    risk_bad_blocks_rate_high: float = 0.80
    risk_bad_blocks_accel: float = 0.15  # added risk when the growth is accelerating
    bad_system_blocks_level: float = 20
    risk_bad_system_blocks: float = 0.30
    bad_system_blocks_growth: float = 1  # new bad system blocks within the short window
    risk_bad_system_growth: float = 0.45
    # uncorrectable errors (OCP uncorrectable read errors, NVMe media and data integrity errors)
    ue_level_low: float = 1
    risk_ue_low: float = 0.12
    ue_level_watch: float = 10
    risk_ue_watch: float = 0.40
    ue_per_year_watch: float = 5  # …and at least this many per power-on year (old drives collect a few)
    risk_ue_slow: float = 0.25  # many, but accumulated slowly over a long life
    ue_level_replace: float = 1000
    risk_ue_replace: float = 0.75
    ue_new_watch: float = 2  # new within the short window
    risk_ue_new: float = 0.45
    ue_new_replace: float = 50
    risk_ue_new_high: float = 0.80
    # end-to-end detected errors: data-path corruption caught by protection information
    e2e_level: float = 1
    risk_e2e: float = 0.45
    risk_e2e_new: float = 0.60
    # XOR (die-parity) recoveries: the drive rebuilding data it could not read
    xor_new_watch: float = 5
    risk_xor_new: float = 0.30
    xor_level: float = 100
    risk_xor_level: float = 0.15
    # soft ECC: correctable, counts grow with use; only a sudden rise counts
    soft_ecc_ratio: float = 5.0  # short-window rate over long-window rate
    soft_ecc_min_per_day: float = 1000
    risk_soft_ecc: float = 0.20
    # thermal throttling
    thermal_events_level: float = 20
    risk_thermal_events: float = 0.10
    throttling_status_level: float = 2
    risk_throttling_status: float = 0.15
    # PCIe correctable errors: link health (reseat/cable/slot) more than media
    pcie_per_day: float = 100
    risk_pcie: float = 0.15
    # capacitor (power-loss protection) health and media dies
    capacitor_health_min: float = 50
    risk_capacitor: float = 0.60
    risk_die_offline: float = 0.45
    risk_die_tolerance: float = 0.90
    command_timeouts_new: float = 3
    risk_command_timeouts: float = 0.25

    @classmethod
    def from_yaml(cls, path: str | Path) -> Thresholds:
        """Load from a YAML mapping (any subset of the fields); errors name the file and the field."""
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if isinstance(data, Mapping) and "ssd" in data and isinstance(data["ssd"], Mapping):
            data = data["ssd"]
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping of threshold names to numbers")
        try:
            return cls(**data)
        except ValidationError as exc:
            raise ValueError(f"{path}: {exc}") from exc


@dataclass
class Reason:
    code: str  # stable identifier, e.g. "bad_blocks_rate"
    text: str  # one sentence for an operator
    risk: float  # this rule's contribution
    group: str = ""  # rules in one group count once (the strongest)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "risk": round(self.risk, 3)}


@dataclass
class Assessment:
    drive_id: str
    risk: float
    recommendation: Recommendation
    reasons: list[Reason] = field(default_factory=list)
    as_of: datetime | None = None
    features: Features | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> int:
        return SEVERITY[self.recommendation]

    def reason_texts(self) -> list[str]:
        return [r.text for r in self.reasons]

    def as_dict(self, *, with_levels: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "drive_id": self.drive_id,
            "risk": round(self.risk, 4),
            "recommendation": self.recommendation,
            "reasons": self.reason_texts(),
            "reason_codes": [r.code for r in self.reasons],
            "as_of": self.as_of.isoformat() if self.as_of else None,
        }
        if self.info:
            out.update({k: v for k, v in self.info.items() if k not in out})
        if with_levels and self.features is not None:
            out["levels"] = {k: v for k, v in self.features.levels.items() if v is not None}
            out["history_days"] = round(self.features.span_days, 2)
            out["samples"] = self.features.points
        return out


@dataclass
class _Point:
    collected_at: datetime
    smart: Mapping[str, Any]
    ocp: Mapping[str, Any]


def _count(n: float, one: str, many: str) -> str:
    """ "1 bad block", "2 bad blocks" (numbers with thousands separators)."""
    return f"{n:,.0f} {one if round(n) == 1 else many}"


def _fmt(n: float) -> str:
    return f"{n:,.0f}" if abs(n) >= 10 or float(n).is_integer() else f"{n:.2g}"


def _rules(f: Features, th: Thresholds) -> list[Reason]:
    out: list[Reason] = []
    trend = f.trends.get

    # critical warnings
    cw = int(f.level("critical_warning"))
    for bit, code, risk, text in (
        (0x01, "cw_spare", th.risk_cw_spare, "critical warning: available spare has fallen below its threshold"),
        (0x04, "cw_reliability", th.risk_cw_reliability,
         "critical warning: the drive reports its reliability degraded by media or internal errors"),
        (0x08, "cw_read_only", th.risk_cw_read_only, "critical warning: the media has been placed in read-only mode"),
        (0x10, "cw_volatile_backup", th.risk_cw_volatile_backup,
         "critical warning: the volatile memory backup (power-loss protection) has failed"),
        (0x20, "cw_pmr", th.risk_cw_pmr, "critical warning: the persistent memory region is read-only or unreliable"),
        (0x02, "cw_temperature", th.risk_cw_temperature,
         "critical warning: temperature is outside its thresholds (check cooling before the drive)"),
    ):
        if cw & bit:
            out.append(Reason(code, text, risk, group=code))

    # spare
    spare, thresh = f.levels.get("avail_spare"), f.levels.get("spare_thresh")
    if spare is not None and thresh is not None and not cw & 0x01:
        margin = spare - thresh
        if margin < 0:
            out.append(Reason("spare_below_threshold", f"available spare {spare:.0f}% is below its threshold "
                              f"{thresh:.0f}%", th.risk_cw_spare, group="spare"))
        elif margin <= th.spare_margin_watch:
            out.append(Reason("spare_near_threshold", f"available spare {spare:.0f}% is within "
                              f"{margin:.0f} points of its threshold {thresh:.0f}%", th.risk_spare_near, group="spare"))
        elif margin <= th.spare_margin_low:
            out.append(Reason("spare_low", f"available spare down to {spare:.0f}% (threshold {thresh:.0f}%)",
                              th.risk_spare_low, group="spare"))
    t = trend("avail_spare")
    if spare is not None and thresh is not None and t and t.slope_long < 0 and spare >= thresh:
        slope = min(t.slope_short, t.slope_long) if t.slope_short < 0 else t.slope_long
        days = project_days(spare, thresh, slope)
        if days is not None and days <= th.spare_projection_days_replace:
            out.append(Reason("spare_projection", f"at its current rate the spare reaches its threshold in about "
                              f"{max(days, 1):.0f} days", th.risk_spare_projection_replace, group="spare_projection"))
        elif days is not None and days <= th.spare_projection_days_watch:
            out.append(Reason("spare_projection", f"at its current rate the spare reaches its threshold in about "
                              f"{days:.0f} days", th.risk_spare_projection_watch, group="spare_projection"))

    # wear
    used = f.levels.get("percent_used")
    if used is not None:
        if used >= th.percent_used_watch:
            out.append(Reason("worn_out", f"percentage used is {used:.0f}%: the rated endurance is consumed",
                              th.risk_percent_used_watch, group="wear"))
        elif used >= th.percent_used_notice:
            out.append(Reason("wear_high", f"percentage used is {used:.0f}%, near the rated endurance",
                              th.risk_percent_used_notice, group="wear"))
        t = trend("percent_used")
        if used < th.percent_used_watch and t and t.slope_long > 0:
            days = project_days(used, th.percent_used_watch, t.slope_long)
            if days is not None and days <= th.wear_projection_days:
                out.append(Reason("wear_projection", f"at its current write rate it reaches 100% used in about "
                                  f"{days:.0f} days", th.risk_wear_projection, group="wear"))
    max_erase = f.levels.get("max_erase")
    if max_erase is not None and th.rated_pe_cycles > 0 and max_erase / th.rated_pe_cycles >= th.erase_ratio_watch:
        out.append(Reason("erase_count", f"maximum block erase count {max_erase:,.0f} has reached the NAND rating "
                          f"({th.rated_pe_cycles:,.0f} cycles)", th.risk_erase_watch, group="wear"))

    # bad blocks
    bub = f.levels.get("bad_user_blocks")
    if bub is not None:
        if bub >= th.bad_user_blocks_level_high:
            out.append(Reason("bad_user_blocks", f"{bub:,.0f} bad user NAND blocks", th.risk_bad_user_blocks_level_high,
                              group="bad_blocks_level"))
        elif bub >= th.bad_user_blocks_level:
            out.append(Reason("bad_user_blocks", f"{bub:,.0f} bad user NAND blocks", th.risk_bad_user_blocks_level,
                              group="bad_blocks_level"))
    norm = f.levels.get("bad_user_blocks_norm")
    if norm is not None and f.has_ocp and 0 < norm <= th.bad_user_norm_watch:
        out.append(Reason("bad_user_blocks_norm", f"bad user NAND blocks have used {100 - norm:.0f}% of the "
                          "block-retirement budget", th.risk_bad_user_norm, group="bad_blocks_level"))
    t = trend("bad_user_blocks")
    if t and t.slope_short >= th.bad_blocks_per_day_watch:
        fast = t.slope_short >= th.bad_blocks_per_day_replace
        risk = th.risk_bad_blocks_rate_high if fast else th.risk_bad_blocks_rate
        accel = t.accel > 0 and t.slope_short > t.slope_long
        if accel:
            risk = min(0.99, risk + th.risk_bad_blocks_accel)
        out.append(Reason("bad_blocks_rate", f"bad user NAND blocks growing by {_fmt(t.slope_short)} a day over the "
                          f"last {th.short_days:.0f} days{', and accelerating' if accel else ''}", risk,
                          group="bad_blocks_trend"))
    bsb = f.levels.get("bad_system_blocks")
    t = trend("bad_system_blocks")
    if t and t.delta_short >= th.bad_system_blocks_growth:
        what = _count(t.delta_short, "new bad system-area NAND block", "new bad system-area NAND blocks")
        out.append(Reason("bad_system_growth", what + " in the last "
                          f"{th.short_days:.0f} days", th.risk_bad_system_growth, group="bad_system"))
    elif bsb is not None and bsb >= th.bad_system_blocks_level:
        out.append(Reason("bad_system_blocks", f"{bsb:,.0f} bad system-area NAND blocks",
                          th.risk_bad_system_blocks, group="bad_system"))

    # uncorrectable errors: level and growth, from whichever log counts more
    ue = max(f.level("uncorrectable"), f.level("media_errors"))
    ue_ocp = f.level("uncorrectable") >= f.level("media_errors")
    which = ("uncorrectable read error", "uncorrectable read errors") if ue_ocp else \
        ("media and data integrity error", "media and data integrity errors")
    if ue >= th.ue_level_replace:
        out.append(Reason("uncorrectable", _count(ue, *which), th.risk_ue_replace, group="ue_level"))
    elif ue >= th.ue_level_watch:
        poh = f.level("power_on_hours")
        per_year = ue / (poh / 8766) if poh >= 24 * 30 else None
        if per_year is not None and per_year < th.ue_per_year_watch:
            out.append(Reason("uncorrectable", f"{_count(ue, *which)}, about {per_year:.1f} a year of power-on time",
                              th.risk_ue_slow, group="ue_level"))
        else:
            out.append(Reason("uncorrectable", _count(ue, *which), th.risk_ue_watch, group="ue_level"))
    elif ue >= th.ue_level_low:
        out.append(Reason("uncorrectable", f"{_count(ue, *which)} (drives that never fail have a few too)",
                          th.risk_ue_low, group="ue_level"))
    new_ue = max(t.delta_short if (t := trend("uncorrectable")) else 0.0,
                 t.delta_short if (t := trend("media_errors")) else 0.0)
    if new_ue >= th.ue_new_replace:
        out.append(Reason("uncorrectable_rate", _count(new_ue, "new uncorrectable error", "new uncorrectable errors")
                          + " in the last "
                          f"{th.short_days:.0f} days", th.risk_ue_new_high, group="ue_trend"))
    elif new_ue >= th.ue_new_watch:
        out.append(Reason("uncorrectable_rate", _count(new_ue, "new uncorrectable error", "new uncorrectable errors")
                          + " in the last "
                          f"{th.short_days:.0f} days", th.risk_ue_new, group="ue_trend"))

    # end-to-end
    e2e = f.level("e2e_detected")
    t = trend("e2e_detected")
    if t and t.delta_short > 0:
        what = _count(t.delta_short, "new end-to-end detected error", "new end-to-end detected errors")
        out.append(Reason("e2e_new", what + " (data-path corruption) "
                          f"in the last {th.short_days:.0f} days", th.risk_e2e_new, group="e2e"))
    elif e2e >= th.e2e_level:
        out.append(Reason("e2e", _count(e2e, "end-to-end detected error", "end-to-end detected errors")
                          + " (data-path corruption caught)",
                          th.risk_e2e, group="e2e"))

    # XOR
    t = trend("xor_recovery")
    if t and t.delta_short >= th.xor_new_watch:
        out.append(Reason("xor_rate", _count(t.delta_short, "XOR (die-parity) recovery", "XOR (die-parity) recoveries")
                          + " in the last "
                          f"{th.short_days:.0f} days", th.risk_xor_new, group="xor"))
    elif f.level("xor_recovery") >= th.xor_level:
        out.append(Reason("xor", f"{f.level('xor_recovery'):,.0f} XOR (die-parity) recoveries", th.risk_xor_level,
                          group="xor"))

    # soft ECC: a sudden rise only
    t = trend("soft_ecc")
    if t and t.slope_short >= th.soft_ecc_min_per_day and t.slope_short >= th.soft_ecc_ratio * max(t.slope_long, 1e-9) \
            and t.days > th.short_days:
        out.append(Reason("soft_ecc_rise", f"soft ECC corrections rising: {_fmt(t.slope_short)} a day, "
                          f"{t.slope_short / max(t.slope_long, 1e-9):.0f}× the {th.long_days:.0f}-day rate",
                          th.risk_soft_ecc, group="soft_ecc"))

    # thermal
    if f.level("throttling_status") >= th.throttling_status_level:
        out.append(Reason("throttling", f"thermal throttling now at level {f.level('throttling_status'):.0f} "
                          "(check airflow)", th.risk_throttling_status, group="thermal"))
    elif f.level("thermal_events") >= th.thermal_events_level:
        out.append(Reason("thermal_events", f"{f.level('thermal_events'):,.0f} thermal throttling events "
                          "(check airflow)", th.risk_thermal_events, group="thermal"))

    # PCIe
    t = trend("pcie_correctable")
    if t and t.slope_short >= th.pcie_per_day:
        out.append(Reason("pcie_errors", f"PCIe correctable errors at {_fmt(t.slope_short)} a day (link: reseat or "
                          "check the slot/cable before replacing)", th.risk_pcie, group="pcie"))

    # capacitor, dies, timeouts
    cap = f.levels.get("capacitor_health")
    if cap is not None and f.has_ocp and 0 < cap < th.capacitor_health_min:
        out.append(Reason("capacitor", f"power-loss-protection capacitor health {cap:.0f}%", th.risk_capacitor,
                          group="capacitor"))
    offline = f.level("media_dies_offline")
    tolerance = f.levels.get("die_failure_tolerance")
    if offline > 0:
        if tolerance is not None and tolerance > 0 and offline >= tolerance:
            out.append(Reason("dies_offline", f"{offline:.0f} media dies offline: the die-failure tolerance "
                              f"({tolerance:.0f}) is used up", th.risk_die_tolerance, group="dies"))
        else:
            out.append(Reason("dies_offline", f"{offline:.0f} media die(s) offline", th.risk_die_offline,
                              group="dies"))
    t = trend("command_timeouts")
    if t and t.delta_short >= th.command_timeouts_new:
        out.append(Reason("command_timeouts", _count(t.delta_short, "command timeout", "command timeouts")
                          + " in the last "
                          f"{th.short_days:.0f} days", th.risk_command_timeouts, group="timeouts"))
    return out


def combine(reasons: Sequence[Reason]) -> float:
    """Noisy-OR of the strongest reason in each group."""
    best: dict[str, float] = {}
    for r in reasons:
        key = r.group or r.code
        best[key] = max(best.get(key, 0.0), r.risk)
    remaining = 1.0
    for risk in best.values():
        remaining *= 1.0 - min(max(risk, 0.0), 1.0)
    return 1.0 - remaining


def recommend(risk: float, th: Thresholds) -> Recommendation:
    if risk >= th.replace_at:
        return "REPLACE"
    if risk >= th.watch_at:
        return "WATCH"
    return "MONITOR"


def score_features(features: Features, thresholds: Thresholds | None = None, *, drive_id: str = "") -> Assessment:
    th = thresholds or Thresholds()
    reasons = sorted(_rules(features, th), key=lambda r: -r.risk)
    risk = combine(reasons)
    rec = recommend(risk, th)
    if not reasons:
        reasons = [Reason("healthy", "no warning signs in the health logs", 0.0)]
    return Assessment(drive_id=drive_id, risk=risk, recommendation=rec, reasons=reasons, as_of=features.as_of,
                      features=features)


def score_history(points: Sequence[PointLike], thresholds: Thresholds | None = None, *,
                  drive_id: str = "") -> Assessment:
    """Score a drive from its samples (oldest first or not; one sample gives a levels-only score)."""
    th = thresholds or Thresholds()
    feats = extract(points, short_days=th.short_days, long_days=th.long_days)
    return score_features(feats, th, drive_id=drive_id)


def score_snapshot(smart: Mapping[str, Any] | None, ocp: Mapping[str, Any] | None,
                   thresholds: Thresholds | None = None, *, drive_id: str = "",
                   at: datetime | None = None) -> Assessment:
    """Score one reading (no trends)."""
    point = _Point(at or datetime.now(UTC), smart or {}, ocp or {})
    return score_history([point], thresholds, drive_id=drive_id)


def point(collected_at: datetime, smart: Mapping[str, Any] | None = None,
          ocp: Mapping[str, Any] | None = None) -> PointLike:
    """A history point from its parts (for callers without a store row)."""
    return _Point(collected_at, smart or {}, ocp or {})
