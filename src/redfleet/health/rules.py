"""Health rules: the YAML schema (pydantic) and the loader.

A rules file is ``{version: 1, rules: [...]}``; each rule has an ``id``, a ``kind`` and what that kind needs:

- ``metric``: a condition over one metric's samples (``threshold`` / ``equals`` / ``delta`` / ``rate`` /
  ``absent``), a ``for`` duration it must hold before it fires, ``clear_for`` and ``condition.clear_value``
  (hysteresis) before it clears, thresholds per GPU model (``value_by_model``).
- ``event``: matches in-band events (kind, Xid codes, message regex) or BMC events (MessageId / message regex,
  severity); a ``hold`` (how long the reason stays) and ``recurrence`` (N in a window escalates).
- ``xid``: the NVIDIA Xid catalog (``data/xid_catalog.json``): resolution buckets -> policies, the WORKFLOW_*
  buckets as stateful logic, recurrence escalation along a ladder of actions, Xid 154 as the driver's verdict.
- ``node``: reachability and liveness (``bmc_unreachable``, ``agent_silent``, ``os_state``, ``os_unresponsive``,
  ``node_unreachable``, ``gpu_missing``).
- ``component_health``: the Health a BMC reports for inventory items / sensors (fans, PSUs, DIMMs ...).

Every rule has ``severity`` (info | warning | critical: info leaves the node healthy, warning makes it degraded,
critical unhealthy), ``classification`` (transient | suspect | terminal) and a recommended ``action``.
Durations are seconds or strings like ``90s``, ``5m``, ``24h``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

BUILTIN_RULES = Path(__file__).resolve().parent / "data" / "rules.yaml"

Severity = Literal["info", "warning", "critical"]
Classification = Literal["transient", "suspect", "terminal"]
Op = Literal[">", ">=", "<", "<=", "==", "!=", "&"]


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and the field."""


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '1d', '250ms', 12 -> seconds."""
    if value is None:
        raise ValueError("a duration is required")
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    s = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", s)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use seconds or 250ms / 30s / 5m / 2h / 1d)")
    mult = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * mult


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _check_regex(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"{what} is not a valid regular expression: {e}") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RuleBase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=80)
    description: str = ""
    enabled: bool = True
    severity: Severity = "warning"
    classification: Classification = "suspect"
    action: str = Field(default="INVESTIGATE", pattern=r"^[A-Z][A-Z0-9_/]*$")
    message: str | None = None  # str.format template; fields depend on the kind (value, threshold, gpu, ...)


class Condition(_Strict):
    type: Literal["threshold", "equals", "delta", "rate", "absent"]
    op: Op = ">"
    value: float | None = None
    value_by_model: dict[str, float] | None = None  # GPU model substring -> threshold; "default" for the rest
    value_metric: str | None = None  # threshold = the latest value of this metric on the same GPU/labels
    clear_value: float | None = None  # hysteresis: once firing, clears only when this is no longer crossed
    clear_by_model: dict[str, float] | None = None
    window: Duration | None = None  # delta / rate
    per: Duration = 1.0  # rate unit (per second by default; 60 = per minute)

    @model_validator(mode="after")
    def _check(self) -> Condition:
        if self.type in ("threshold", "delta", "rate") and self.value is None and not self.value_by_model \
                and not self.value_metric:
            raise ValueError(f"condition type {self.type!r} needs 'value', 'value_by_model' or 'value_metric'")
        if self.type == "equals" and self.value is None:
            raise ValueError("condition type 'equals' needs 'value'")
        if self.type in ("delta", "rate") and not self.window:
            raise ValueError(f"condition type {self.type!r} needs 'window' (e.g. 5m)")
        if self.value_by_model is not None and "default" not in self.value_by_model and self.value is None:
            raise ValueError("value_by_model needs a 'default' entry (or give 'value' as the default)")
        return self


class MetricRule(RuleBase):
    kind: Literal["metric"]
    metric: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)  # label -> regex (full match)
    condition: Condition
    for_: Duration = Field(default=0.0, alias="for")
    clear_for: Duration = 0.0
    component: str = "gpu"  # gpu -> "gpu:<index>"; node; or a kind named by component_label's value
    component_label: str | None = None
    action_by_value: dict[int, str] | None = None  # e.g. the GPU recovery-action field
    require_power_on: bool = False  # only while the BMC says the host is powered on (fans read 0 when off)

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        for k, v in self.labels.items():
            _check_regex(v, f"labels.{k}")
        return self


class EventMatch(_Strict):
    source: Literal["any", "inband", "bmc"] = "any"
    kinds: list[str] | None = None  # in-band event kinds (xid, kernel, agent)
    codes: list[int] | None = None  # Xid codes
    message_id: str | None = None  # regex on the Redfish MessageId (search)
    message: str | None = None  # regex on the message text (search, case-insensitive)
    severity: list[str] | None = None  # BMC event severities (OK, Warning, Critical)

    @model_validator(mode="after")
    def _check(self) -> EventMatch:
        _check_regex(self.message_id, "message_id")
        _check_regex(self.message, "message")
        return self


class Escalation(_Strict):
    severity: Severity | None = None
    classification: Classification | None = None
    action: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_/]*$")


class Recurrence(_Strict):
    count: int = Field(ge=2)
    window: Duration
    then: Escalation = Field(default_factory=Escalation)  # unset fields: one step up (ladder / severity)


class EventRule(RuleBase):
    kind: Literal["event"]
    match: EventMatch
    hold: Duration = 3600.0
    recurrence: Recurrence | None = None
    component: str = "node"  # node | gpu | bmc | a fixed name


class BucketPolicy(_Strict):
    severity: Severity
    classification: Classification
    action: str = Field(pattern=r"^[A-Z][A-Z0-9_/]*$")
    hold: Duration = 3600.0
    clear_on_reboot: bool = True
    repeat: Escalation | None = None  # what recurrence turns it into (default: one step up the ladder)


class XidRule(RuleBase):
    kind: Literal["xid"]
    buckets: dict[str, BucketPolicy]
    overrides: dict[int, str] = Field(default_factory=dict)  # code -> bucket where the catalog has none/other
    fallback_bucket: str = "CONTACT_SUPPORT"
    recurrence: Recurrence
    correlate: Duration = 10.0  # "solo" vs "not solo" for the WORKFLOW_* buckets
    ladder: list[str]
    recovery_actions: dict[int, str]  # Xid 154 / GPU recovery-action value -> action

    @model_validator(mode="after")
    def _check(self) -> XidRule:
        needed = {"IGNORE", "RESTART_APP", "RESET_GPU", "RESTART_BM", "CONTACT_SUPPORT"}
        missing = sorted(needed - set(self.buckets))
        if missing:
            raise ValueError(f"buckets is missing {', '.join(missing)}")
        for code, b in self.overrides.items():
            if b not in self.buckets:
                raise ValueError(f"overrides.{code}: bucket {b!r} has no policy in buckets")
        if self.fallback_bucket not in self.buckets:
            raise ValueError(f"fallback_bucket {self.fallback_bucket!r} has no policy in buckets")
        return self


class NodeCondition(_Strict):
    type: Literal["bmc_unreachable", "agent_silent", "os_state", "os_unresponsive", "node_unreachable",
                  "gpu_missing"]
    states: list[str] = Field(default_factory=lambda: ["hung", "down"])  # os_state


class NodeRule(RuleBase):
    kind: Literal["node"]
    condition: NodeCondition
    for_: Duration = Field(default=0.0, alias="for")
    component: str = "node"


class ComponentHealthRule(RuleBase):
    kind: Literal["component_health"]
    collections: list[str]  # inventory collections (fans, psus, memory, gpus, drives ...) / sensor kinds
    health: list[str] = Field(default_factory=lambda: ["Critical"])
    source: Literal["inventory", "sensors", "any"] = "any"
    # How long the BMC must keep reporting that Health before it counts: a sensor that crosses its threshold for
    # one poll and comes back is a blip, not a failure.
    for_: Duration = Field(default=0.0, alias="for")


Rule = Annotated[MetricRule | EventRule | XidRule | NodeRule | ComponentHealthRule, Field(discriminator="kind")]
_RULE = TypeAdapter(Rule)
KINDS = ("metric", "event", "xid", "node", "component_health")


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        if loc and loc[0] in KINDS:  # the discriminated-union tag pydantic puts first
            loc = loc[1:]
        where = ".".join(loc) or "(rule)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"field {where!r}: {msg}")
    return "; ".join(parts)


def parse_rules(doc: Any, origin: str = "<rules>") -> list[Any]:
    """Validate a loaded YAML document; raises RulesError naming the rule and the field."""
    if not isinstance(doc, dict) or "rules" not in doc:
        raise RulesError(f"{origin}: expected a mapping with 'version: 1' and 'rules: [...]'")
    if doc.get("version", 1) != 1:
        raise RulesError(f"{origin}: unsupported rules version {doc.get('version')!r} (expected 1)")
    raw_rules = doc["rules"]
    if not isinstance(raw_rules, list):
        raise RulesError(f"{origin}: 'rules' must be a list")
    out: list[Any] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        name = raw.get("id") if isinstance(raw, dict) else None
        label = f"rule {name!r}" if name else f"rule #{i + 1}"
        if not isinstance(raw, dict):
            raise RulesError(f"{origin}: {label}: expected a mapping, got {type(raw).__name__}")
        if raw.get("kind") not in KINDS:
            raise RulesError(f"{origin}: {label}: field 'kind': must be one of {', '.join(KINDS)}, "
                             f"got {raw.get('kind')!r}")
        try:
            rule = _RULE.validate_python(raw)
        except ValidationError as e:
            raise RulesError(f"{origin}: {label}: {_describe(e)}") from None
        if rule.id in seen:
            raise RulesError(f"{origin}: {label}: duplicate id")
        seen.add(rule.id)
        out.append(rule)
    return out


def load_rules(paths: str | Path | Iterable[str | Path] | None = None, builtin: bool = True) -> list[Any]:
    """The built-in rules (``data/rules.yaml``), then each file in ``paths``: a rule whose id is already loaded
    replaces it (``enabled: false`` switches a built-in one off). Disabled rules are left out."""
    files: list[Path] = []
    if builtin:
        files.append(BUILTIN_RULES)
    if paths is not None:
        if isinstance(paths, (str, Path)):
            files.append(Path(paths))
        else:
            files.extend(Path(p) for p in paths)
    merged: dict[str, Any] = {}
    for f in files:
        if f == BUILTIN_RULES:
            for rule in _builtin(f.stat().st_mtime_ns):
                merged[rule.id] = rule
            continue
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RulesError(f"{f}: rules file not found") from None
        except yaml.YAMLError as e:
            raise RulesError(f"{f}: not valid YAML: {e}") from None
        for rule in parse_rules(doc, str(f)):
            merged[rule.id] = rule
    return [r for r in merged.values() if r.enabled]


@functools.lru_cache(maxsize=2)
def _builtin(mtime_ns: int) -> tuple[Any, ...]:
    """The built-in rules, parsed once (rules are frozen models; sharing them is safe)."""
    doc = yaml.safe_load(BUILTIN_RULES.read_text(encoding="utf-8"))
    return tuple(parse_rules(doc, str(BUILTIN_RULES)))


def loads_rules(text: str, origin: str = "<string>", builtin: bool = False) -> list[Any]:
    """Rules from YAML text (tests, the API); with ``builtin=True`` they are merged over the built-in ones."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RulesError(f"{origin}: not valid YAML: {e}") from None
    merged: dict[str, Any] = {r.id: r for r in load_rules(None)} if builtin else {}
    for rule in parse_rules(doc, origin):
        merged[rule.id] = rule
    return [r for r in merged.values() if r.enabled]
