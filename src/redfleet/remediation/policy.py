"""The remediation policy: a YAML file (``data/policy.yaml`` is the built-in one) read into typed, checked objects.

```python
policy = load_policy("site.yaml")          # or load_policy(None) for the built-in
policy.start_rung("RESTART_BM")            # "power-cycle"
policy.next_rung("power-cycle")            # "reimage"
```
A bad file fails with :class:`PolicyError` naming the field and what was wrong.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

RUNGS = ("gpu-reset", "reboot", "power-cycle", "reimage", "decommission")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class PolicyError(ValueError):
    pass


def parse_duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (like 30s, 10m, 2h, 7d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _dur(v: Any) -> float:
    return parse_duration(v)


class RungPolicy(_Model):
    timeout: float = 900.0
    retries: int = Field(default=0, ge=0, le=10)

    _t = field_validator("timeout", mode="before")(lambda cls, v: _dur(v))


class ReimagePolicy(_Model):
    method: Literal["virtual-media", "command"] = "virtual-media"
    image: str | None = None
    command: list[str] | None = None


class DrainPolicy(_Model):
    timeout: float = 600.0
    on_timeout: Literal["proceed", "fail"] = "proceed"

    _t = field_validator("timeout", mode="before")(lambda cls, v: _dur(v))


class GatePolicy(_Model):
    settle: float = 30.0
    timeout: float = 600.0
    command: list[str] | None = None
    command_timeout: float = 300.0

    _t = field_validator("settle", "timeout", "command_timeout", mode="before")(lambda cls, v: _dur(v))


class BreakerPolicy(_Model):
    unhealthy_percent: float = Field(default=10.0, gt=0, le=100)
    window: float = 300.0
    min_nodes: int = Field(default=3, ge=1)

    _t = field_validator("window", mode="before")(lambda cls, v: _dur(v))


class LemonPolicy(_Model):
    remediations: int = Field(default=3, ge=1)
    days: float = Field(default=7.0, gt=0)


class Window(_Model):
    days: list[str] = Field(default_factory=lambda: list(DAYS))
    start: str = "00:00"
    end: str = "23:59"

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out = [d.lower()[:3] for d in v]
        bad = [d for d, short in zip(v, out, strict=True) if short not in DAYS or not
               "monday tuesday wednesday thursday friday saturday sunday".split()[DAYS.index(short)]
               .startswith(d.lower())]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {', '.join(DAYS)}")
        return out

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        try:
            time.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a time of day (HH:MM)") from None
        return v

    def contains(self, when: datetime) -> bool:
        """``when`` (UTC) is inside; a window whose end is before its start runs over midnight."""
        t = when.time()
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        day = DAYS[when.weekday()]
        if start <= end:
            return day in self.days and start <= t <= end
        prev = DAYS[(when.weekday() - 1) % 7]
        return (day in self.days and t >= start) or (prev in self.days and t <= end)


class SafetyPolicy(_Model):
    max_concurrent: int = Field(default=20, ge=1)
    max_concurrent_percent: float = Field(default=5.0, gt=0, le=100)
    max_per_rack: int = Field(default=2, ge=1)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    lemon: LemonPolicy = Field(default_factory=LemonPolicy)
    maintenance_windows: list[Window] = Field(default_factory=list)
    disruptive: list[str] = Field(default_factory=lambda: ["reboot", "power-cycle", "reimage"])

    def cap(self, fleet_size: int) -> int:
        """How many workflows may be active at once in a fleet of ``fleet_size``: the smaller of the two caps."""
        by_share = int(fleet_size * self.max_concurrent_percent / 100.0)
        return max(1, min(self.max_concurrent, by_share))

    def in_window(self, when: datetime) -> bool:
        return not self.maintenance_windows or any(w.contains(when) for w in self.maintenance_windows)


class Policy(_Model):
    ladder: list[str] = Field(default_factory=lambda: list(RUNGS))
    triggers: dict[str, str] = Field(default_factory=dict)
    rule_triggers: dict[str, str] = Field(default_factory=dict)  # rule id -> rung, or "none": overrides triggers
    min_state: Literal["degraded", "unhealthy"] = "unhealthy"
    rungs: dict[str, RungPolicy] = Field(default_factory=dict)
    reimage: ReimagePolicy = Field(default_factory=ReimagePolicy)
    drain: DrainPolicy = Field(default_factory=DrainPolicy)
    health_gate: GatePolicy = Field(default_factory=GatePolicy)
    safety: SafetyPolicy = Field(default_factory=SafetyPolicy)
    approval_required: list[str] = Field(default_factory=list)
    dry_run: bool = False

    @model_validator(mode="after")
    def _check(self) -> Policy:
        unknown = [r for r in self.ladder if r not in RUNGS]
        if unknown:
            raise ValueError(f"ladder: unknown rung(s) {unknown}; known: {', '.join(RUNGS)}")
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError("ladder: a rung appears twice")
        if not self.ladder or self.ladder[-1] != "decommission":
            raise ValueError("ladder: the last rung must be decommission (a ladder must end somewhere safe)")
        for action, rung in self.triggers.items():
            if rung not in self.ladder:
                raise ValueError(f"triggers.{action}: {rung!r} is not on the ladder {self.ladder}")
        for rule, rung in self.rule_triggers.items():
            if rung != "none" and rung not in self.ladder:
                raise ValueError(f"rule_triggers.{rule}: {rung!r} is neither 'none' nor on the ladder {self.ladder}")
        for name in list(self.rungs) + self.approval_required + self.safety.disruptive:
            if name not in RUNGS:
                raise ValueError(f"unknown rung {name!r}; known: {', '.join(RUNGS)}")
        return self

    # -- questions the controller asks

    def start_rung(self, action: str | None) -> str | None:
        return self.triggers.get(action) if action else None

    def rung_for(self, reasons: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
        """The rung a verdict asks for and the reasons that ask for it. Each reason bad enough by itself
        (critical for ``min_state: unhealthy``) names a rung through its rule (``rule_triggers``) or its action
        (``triggers``); the highest rung named wins, since a ladder started too low only climbs anyway."""
        worst = {"unhealthy": ("critical",), "degraded": ("warning", "critical")}[self.min_state]
        best: str | None = None
        asking: list[dict[str, Any]] = []
        for r in reasons:
            if not isinstance(r, dict) or r.get("severity") not in worst:
                continue
            rule = str(r.get("rule") or "")
            rung = self.rule_triggers[rule] if rule in self.rule_triggers else self.triggers.get(str(r.get("action")))
            if rung is None or rung == "none":
                continue
            asking.append(r)
            if best is None or self.ladder.index(rung) > self.ladder.index(best):
                best = rung
        return best, asking

    def next_rung(self, rung: str) -> str:
        i = self.ladder.index(rung)
        return self.ladder[min(i + 1, len(self.ladder) - 1)]

    def rung(self, name: str) -> RungPolicy:
        return self.rungs.get(name) or RungPolicy()

    def needs_approval(self, rung: str) -> bool:
        return rung in self.approval_required

    def is_disruptive(self, rung: str) -> bool:
        return rung in self.safety.disruptive


def _builtin_text() -> str:
    return resources.files("redfleet.remediation").joinpath("data/policy.yaml").read_text()


def load_policy(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None) -> Policy:
    """The built-in policy, with the file at ``path`` laid over it: a site's file holds only what it changes
    (mappings merge key by key; lists and values replace). A trigger set to ``none`` removes a built-in one."""
    doc = _read(None)
    source = "built-in policy"
    if path is not None:
        source = str(path)
        doc = _merge(doc, _read(path))
    if overrides:
        doc = _merge(doc, overrides)
    doc["triggers"] = {k: v for k, v in (doc.get("triggers") or {}).items() if v not in (None, "none")} \
        if isinstance(doc.get("triggers"), dict) else doc.get("triggers")
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise PolicyError(f"{source}: {where}: {first['msg']}"
                          + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")) from None


def _read(path: str | Path | None) -> dict[str, Any]:
    source = "built-in policy" if path is None else str(path)
    try:
        text = _builtin_text() if path is None else Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read the remediation policy {source}: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: the policy must be a mapping, not {type(doc).__name__}")
    return doc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
