"""The profile engine: reads a Redfish service through a resource source and judges it against a profile set.

Results are kept the way DMTF's ``rf_interop_validator`` keeps them, so that counts and verdicts can be compared
one for one: one row per (URI, property path) — several requirements on the same property (from the profile and the
profiles it requires, or from several use cases) fold into one row whose verdict is the most severe — plus one
service-level row per resource type (is the resource there at all). Verdicts are ``pass``, ``warn``, ``fail`` and
``not_tested`` (the reference's SKIP).

The service is walked as the reference walks it: depth first from ``/redfish/v1/``, following ``@odata.id``,
``Uri``, ``Members@odata.nextLink``, ``@Redfish.ActionInfo``, ``DataSourceUri`` and ``TargetComponentURI`` links
(not ``OriginOfCondition``, not into settings or capabilities objects, not into JSON schema files), at most 20 log
entries per collection. Reads are made concurrently first (``prefetch``), so the walk itself only hits the cache.

Two modes:

- ``strict`` (the default) follows DSP0272 where the reference departs from it; each such place is marked
  ``# deviation Dn`` below and argued in ``docs/profiles-vs-dmtf.md``.
- ``dmtf`` reproduces the reference, quirks included — used to show that the two agree row for row.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from redfleet.profiles.memo import Recording, VerdictMemo
from redfleet.profiles.profile import ProfileSet, UseCase, parse_version
from redfleet.profiles.source import CachedSource

SERVICE_ROOT = "/redfish/v1/"
LINK_KEYS = frozenset(
    {"@odata.id", "Uri", "Members@odata.nextLink", "@Redfish.ActionInfo", "DataSourceUri", "TargetComponentURI"}
)
_VERSION = re.compile(r"\.(v(\d+)_(\d+)_(\d+))\.")
_URI_ID = re.compile(r"{[A-Za-z0-9]+}")
_ARRAY_INDEX = re.compile(r"/\d+")
_CONTAINERS = (dict, list)  # a tuple: `dict | list` would build a new union object at every call
_COLLECTION = re.compile(r"^#(.+)Collection\..+Collection$")
_NOT_APPLY = "Comparison Error: Comparison doesn't apply"
_OWN_VALUE = (str, int, float)  # property values a verdict memo entry may keep as their type alone


class Verdict(IntEnum):
    SKIP = 1
    PASS = 2
    WARN = 3
    FAIL = 4

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {Verdict.SKIP: "not_tested", Verdict.PASS: "pass", Verdict.WARN: "warn", Verdict.FAIL: "fail"}
VERDICT_FROM_LABEL = {v: k for k, v in _LABELS.items()}

_ABSENT = object()


@dataclass
class Options:
    mode: str = "strict"  # "strict" or "dmtf"
    collection_limits: dict[str, int] = field(default_factory=lambda: {"LogEntry": 20})
    concurrency: int = 16  # reads in flight while prefetching one service
    no_oem: bool = False
    plan: FleetPlan | None = None  # fleet runs: read only what a validated node of the same platform needed

    @property
    def strict(self) -> bool:
        return self.mode != "dmtf"


@dataclass
class Row:
    """One judged requirement: a property (or action, or resource) at a URI, or a resource type service-wide."""

    resource: str
    uri: str | None
    prop: str
    verdict: Verdict
    found: Any = None
    present: bool = False
    messages: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    purposes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "uri": self.uri,
            "property": self.prop,
            "requirement": "; ".join(dict.fromkeys(self.requirements)),
            "verdict": self.verdict.label,
            "found": self.found,
            "present": self.present,
            "message": "\n".join(dict.fromkeys(m for m in self.messages if m)),
            "purpose": " ".join(dict.fromkeys(self.purposes)) or None,
        }


@dataclass
class TargetResult:
    target: str
    profile: str
    rows: list[Row]
    service_info: dict[str, Any] = field(default_factory=dict)
    protocol: list[Row] = field(default_factory=list)
    error: str | None = None
    resources_read: int = 0
    resources_validated: int = 0
    elapsed_s: float = 0.0
    read_errors: dict[str, str] = field(default_factory=dict)  # URI -> why it could not be read (not 404s)

    def summary(self) -> dict[str, int]:
        counts = {"pass": 0, "warn": 0, "fail": 0, "not_tested": 0}
        for row in self.rows:
            counts[row.verdict.label] += 1
        return counts

    def protocol_summary(self) -> dict[str, int]:
        counts = {"pass": 0, "warn": 0, "fail": 0, "not_tested": 0}
        for row in self.protocol:
            counts[row.verdict.label] += 1
        return counts

    @property
    def worst(self) -> Verdict:
        if self.error:
            return Verdict.FAIL
        verdicts = [r.verdict for r in self.rows] + [r.verdict for r in self.protocol]
        return max(verdicts, default=Verdict.PASS)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target,
            "profile": self.profile,
            "summary": self.summary(),
            "results": [r.to_json() for r in self.rows],
        }
        if self.protocol:
            out["protocol"] = {"summary": self.protocol_summary(), "results": [r.to_json() for r in self.protocol]}
        if self.service_info:
            out["service"] = self.service_info
        if self.error:
            out["error"] = self.error
        if self.read_errors:  # results built on reads that failed (timeouts, 5xx, 401): say so, and which
            out["read_errors"] = {"count": len(self.read_errors), "first": dict(list(self.read_errors.items())[:5])}
        out["resources_read"] = self.resources_read
        out["resources_validated"] = self.resources_validated
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out


def render_found(value: Any) -> Any:
    """The value found, as JSON: scalars and arrays of scalars as they are, links and objects abbreviated."""
    if isinstance(value, dict):
        if len(value) == 1 and "@odata.id" in value:
            return f"[Link to: {value['@odata.id']}]"
        return "[Object]"
    if isinstance(value, list):
        if all(not isinstance(v, _CONTAINERS) for v in value):
            return value
        return f"[Array of {len(value)}]"
    return value


def resource_type_of(payload: dict[str, Any] | None) -> tuple[str | None, tuple[int, int, int] | None, str | None]:
    """(type, version, "vX.Y.Z") from ``@odata.type``."""
    if not payload:
        return None, None, None
    odata_type = payload.get("@odata.type")
    if not isinstance(odata_type, str):
        return None, None, None
    rtype = odata_type.split(".")[-1]
    m = _VERSION.search(odata_type)
    if m:
        return rtype, (int(m.group(2)), int(m.group(3)), int(m.group(4))), m.group(1).replace("_", ".")
    return rtype, None, None


def uri_matches(patterns: list[str] | None, uri: str) -> bool:
    if not patterns:
        return True
    pattern = _URI_ID.sub(r"[^\\/]+", "^{}$".format("|".join(patterns)))
    try:
        return re.fullmatch(pattern, uri) is not None
    except re.error:
        return False


def _find(name: str, local: Any, full: Any, parents: list[Any] | None = None) -> tuple[bool, Any]:
    """A property by name (this object; with ``parents``, then each enclosing object) or by JSON pointer."""
    if name.startswith("/"):
        current = full
        for part in name[1:].split("/"):
            if isinstance(current, dict) and part in current:
                current = current[part]
            elif isinstance(current, list):
                try:
                    index = int(part)
                except ValueError:
                    return False, None
                if 0 <= index < len(current):
                    current = current[index]
                else:
                    return False, None
            else:
                return False, None
        return True, current
    if isinstance(local, dict) and name in local:
        return True, local[name]
    for parent in reversed(parents or []):  # deviation D8: search enclosing objects, as DSP0272 says
        if isinstance(parent, dict) and name in parent:
            return True, parent[name]
    return False, None


class Evaluation:
    """The state of one target's validation."""

    def __init__(self, profiles: ProfileSet, source: Any, options: Options) -> None:
        self.profiles = profiles
        self.source = source
        self.opts = options
        self.strict = options.strict
        self.rows: dict[tuple[str, str], Row] = {}
        self.found_uris: dict[int, list[str]] = {}
        self._found_sets: dict[int, set[str]] = {}
        self.global_checks: dict[str, dict[str, Any]] = {}
        self.use_case: UseCase | None = None
        self.annotation_uris: set[str] = set()
        self.validated: set[str] = set()
        self.parent: dict[str, str | None] = {}
        self.demand: set[str] = set()
        self.evaluating = False
        self.template: PlanTemplate | None = None
        self._links: dict[str, tuple[list[str], list[str]]] = {}
        # (id(requirement), use case) -> (the requirement, the label of its rows)
        self._labels: dict[tuple[int, int], tuple[dict[str, Any], str]] = {}
        # While a resource's judgement is recorded for the verdict memo: its rows (with the JSON pointer of the
        # value each shows), its service-wide checks and use cases found, and what else it reads.
        self._found_refs: dict[tuple[str, str], str | None] | None = None
        self._ops: list[tuple[Any, ...]] | None = None
        self._deps: list[tuple[str, str, Any]] | None = None
        self.platform = ""  # the fleet plan's key of this node's platform (verdict memo entries are per platform)

    def wanted(self, uri: str) -> bool:
        """With a plan template: read a URI only if the template needed it or has never seen it."""
        t = self.template
        return t is None or uri in t.relevant or uri not in t.known

    # ---- reading --------------------------------------------------------------------------------------------
    async def _read(self, uri: str) -> dict[str, Any] | None:
        if self.evaluating:
            self.demand.add(uri)
        return await self.source.get(uri)

    async def get(self, uri: str) -> dict[str, Any] | None:
        payload = await self._read(uri)
        if self._deps is not None:
            self._deps.append(("get", uri, payload))
        return payload

    async def type_of(self, uri: str) -> str | None:
        rtype = resource_type_of(await self._read(uri))[0]
        if self._deps is not None:
            self._deps.append(("type", uri, rtype))
        return rtype

    def _allow(self, uri: str) -> str | None:
        fn = getattr(self.source, "allow_header", None)
        return fn(uri) if fn else None

    def allow(self, uri: str) -> str | None:
        value = self._allow(uri)
        if self._deps is not None:
            self._deps.append(("allow", uri, value))
        return value

    async def allow_of(self, uri: str) -> str | None:
        await self._read(uri)
        return self.allow(uri)

    # ---- results --------------------------------------------------------------------------------------------
    def add(self, uri: str, prop: str, present: bool, value: Any, verdict: Verdict, message: str,
            resource: str = "", requirement: str | None = None, purpose: str | None = None,
            ref: str | None = None) -> None:
        """``ref``: the JSON pointer of ``value`` in the resource, when it is a property's own value (a replayed
        judgement shows that node's value there)."""
        key = (uri, prop)
        row = self.rows.get(key)
        if row is None:
            row = Row(resource, uri, prop, verdict, render_found(value) if present else None, present, [message])
            self.rows[key] = row
            if self._found_refs is not None:
                self._found_refs[key] = ref if present else None
        else:
            if row.verdict >= Verdict.WARN and verdict <= Verdict.PASS:
                return
            if row.verdict <= Verdict.PASS:
                row.messages = [message]
            else:
                row.messages.append(message)
            row.verdict = max(row.verdict, verdict)
            if present and not row.present:
                row.found, row.present = render_found(value), True
                if self._found_refs is not None:
                    self._found_refs[key] = ref
        if self.use_case is not None:
            row.requirements.append(requirement or self.use_case.label)
            if not row.resource:
                row.resource = self.use_case.resource
        elif requirement:
            row.requirements.append(requirement)
        if purpose:
            row.purposes.append(purpose)

    def add_global(self, uri: str, prop: str, value: Any, comparison: str, expected: list[Any]) -> None:
        assert self.use_case is not None
        if self._ops is not None:
            self._ops.append(("global", self.use_case, (uri, prop, value, comparison, expected)))
        name = f"{self.use_case.index}_{_ARRAY_INDEX.sub('', prop)}_{comparison}"
        check = self.global_checks.get(name)
        if check is None:
            check = {"use_case": self.use_case, "comparison": comparison, "expected": expected, "found": [],
                     "where": []}
            self.global_checks[name] = check
        check["where"].append((uri, prop))
        check["found"].extend(value if isinstance(value, list) else [value])

    # ---- comparisons ----------------------------------------------------------------------------------------
    async def compare(self, prop: str, ctype: str, values: list[Any], local: Any, full: Any,
                      parents: list[Any] | None = None) -> str | None:
        """None when the comparison holds; otherwise why not."""
        found, value = _find(prop, local, full, parents if self.strict else None)
        if not found:
            return None if ctype == "Absent" else _NOT_APPLY
        if self.strict:
            return await self._compare_strict(ctype, values, value)
        return await self._compare_dmtf(ctype, values, value)

    async def _linked_type(self, value: Any) -> tuple[str | None, str | None]:
        if not isinstance(value, dict) or "@odata.id" not in value:
            return None, "Comparison Error: The property does not contain a valid reference object"
        target = value["@odata.id"]
        if not isinstance(target, str) or not target.startswith("/"):
            return None, "Comparison Error: The property does not contain a valid URI"
        return await self.type_of(target), None

    async def _compare_dmtf(self, ctype: str, values: list[Any], value: Any) -> str | None:
        result: str | None = _NOT_APPLY
        items = value if isinstance(value, list) else [value]
        dumped = ", ".join(json.dumps(v) for v in values)
        for item in items:
            if ctype == "Present":
                return None
            if ctype in ("AnyOf", "Equal", "Pattern", "LinkToResource"):
                match = False
                for cv in values:
                    if ctype == "Equal" and cv == item:
                        match = True
                        break
                    if ctype == "LinkToResource":
                        linked, _err = await self._linked_type(item)
                        if linked is not None and linked in values:
                            match = True
                            break
                    if ctype == "Pattern" and isinstance(item, str) and isinstance(cv, str):
                        try:
                            if re.match(cv, item):
                                match = True
                                break
                        except re.error:
                            pass
                # The reference never matches AnyOf here (deviation D1 in strict mode).
                result = None if match else _fail_text(ctype, dumped)
            elif ctype in ("NotEqual", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"):
                result = None
                for cv in values:
                    msg = _ordered(ctype, item, cv)
                    if msg:
                        result = msg
            elif ctype == "Range":
                result = _range(values, item)
        return result

    async def _compare_strict(self, ctype: str, values: list[Any], value: Any) -> str | None:
        items = value if isinstance(value, list) else [value]
        dumped = ", ".join(json.dumps(v) for v in values)
        if ctype == "Present":
            return None
        if ctype == "Absent":
            return "Comparison Error: The property is present, but must be absent"
        if ctype == "AnyOf":  # deviation D1: at least one value among the property's values
            return None if any(_equal(i, v) for i in items for v in values) else _fail_text("AnyOf", dumped)
        if ctype == "AllOf":  # deviation D1: every value among the property's values
            if all(any(_equal(i, v) for i in items) for v in values):
                return None
            return f"Comparison Error: The property does not contain all of the expected values: {dumped}"
        if not items:
            return _NOT_APPLY
        # deviation D2: every element of an array must satisfy the comparison, not only the last one
        for item in items:
            msg: str | None = None
            if ctype == "Equal":
                msg = None if any(_equal(item, v) for v in values) else _fail_text(ctype, dumped)
            elif ctype == "Pattern":
                ok = False
                for cv in values:
                    if not ok and isinstance(item, str) and isinstance(cv, str):
                        try:
                            ok = re.match(cv, item) is not None
                        except re.error:
                            pass
                msg = None if ok else _fail_text(ctype, dumped)
            elif ctype == "LinkToResource":
                linked, err = await self._linked_type(item)
                msg = None if linked is not None and linked in values else (err or _fail_text(ctype, dumped))
            elif ctype in ("NotEqual", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"):
                for cv in values:
                    if ctype != "NotEqual" and not _numeric(item):  # deviation D7
                        msg = f"Comparison Error: The property value '{item}' is not a number"
                        break
                    msg = _ordered(ctype, item, cv) or msg
            elif ctype == "Range":
                msg = (f"Comparison Error: The property value '{item}' is not a number"
                       if not _numeric(item) else _range(values, item))  # deviation D7
            if msg:
                return msg
        return None

    # ---- conditions and use cases ---------------------------------------------------------------------------
    @staticmethod
    def _parent_uri(split: list[str]) -> str:
        # The reference builds "//redfish/v1/..." here; its HTTP library turns "//" into "/" before sending.
        return "/".join(split) or "/"

    async def parent_chain_matches(self, uri: str, parents: list[str]) -> bool:
        split = uri.split("/")
        for parent_type in reversed(parents):
            if len(split) < 3:
                return False
            del split[-1]
            if await self.type_of(self._parent_uri(split)) != parent_type:
                return False
        return True

    async def conditional(self, req: dict[str, Any], uri: str, local: Any, full: Any,
                          parents: list[Any] | None = None) -> dict[str, Any]:
        conditions = req.get("ConditionalRequirements")
        if not conditions:
            return req
        for cond in conditions:
            if "URIs" in cond and not uri_matches(cond["URIs"], uri):
                continue
            if "SubordinateToResource" in cond and not await self.parent_chain_matches(
                uri, cond["SubordinateToResource"]
            ):
                continue
            if "CompareProperty" in cond and "CompareType" in cond:
                if await self.compare(cond["CompareProperty"], cond["CompareType"], list(cond.get("CompareValues", [])),
                                      local, full, parents) is not None:
                    continue
            updated = dict(req)
            updated["ReadRequirement"] = cond.get("ReadRequirement", "Mandatory")
            updated["WriteRequirement"] = cond.get("WriteRequirement", "None")
            for key in ("Purpose", "Values", "Comparison"):
                updated.pop(key, None)
                if key in cond:
                    updated[key] = cond[key]
            updated["_condition"] = cond
            return updated
        return req

    async def applicable_use_cases(self, rtype: str, uri: str, payload: dict[str, Any]) -> list[UseCase]:
        out: list[UseCase] = []
        for uc in self.profiles.use_cases_for(rtype):
            req = uc.req
            if not uri_matches(req.get("URIs"), uri):
                continue
            kind = req.get("UseCaseType", "Normal")
            if "UseCaseKeyValues" in req or kind == "AbsentResource":
                comparison = req.get("UseCaseComparison", "Equal")
                values = list(req.get("UseCaseKeyValues", []))
                if kind == "Normal":
                    if await self.compare("/" + req.get("UseCaseKeyProperty", ""), comparison, values, {},
                                          payload) is not None:
                        continue
                elif kind == "AbsentResource":
                    status = payload.get("Status")
                    if not isinstance(status, dict) or status.get("State") != "Absent":
                        continue
                else:
                    parent_type, parent_prop = _USE_CASE_PARENTS.get(kind, (None, None))
                    if parent_type is None:
                        continue
                    split = uri.split("/")
                    parent_uri = None
                    while len(split) >= 3:
                        del split[-1]
                        candidate = self._parent_uri(split)
                        if await self.type_of(candidate) == parent_type:
                            parent_uri = candidate
                            break
                    if parent_uri is None:
                        continue
                    parent = await self.get(parent_uri) or {}
                    if await self.compare(parent_prop or "", comparison, values, {}, parent) is not None:
                        continue
            self._found(uc, uri)
            out.append(uc)
        return out

    # ---- one resource ---------------------------------------------------------------------------------------
    async def validate_resource(self, uc: UseCase, uri: str, payload: dict[str, Any]) -> None:
        req = await self.conditional(uc.req, uri, payload, payload)
        min_text = str(req.get("MinVersion", "1.0.0"))
        if self.strict:
            min_ver = parse_version(min_text)
        else:
            m = _VERSION.search(".v" + min_text.replace(".", "_") + ".")
            min_ver = (int(m.group(2)), int(m.group(3)), int(m.group(4))) if m else None
        _, version, version_text = resource_type_of(payload)
        if version is not None and min_ver is not None and version < min_ver:
            self.add(uri, "", True, None, Verdict.FAIL,
                     f"Resource Version Error: The resource version ({version_text}) is lower than the minimum "
                     f"version required by the profile (v{'.'.join(map(str, min_ver))})",
                     requirement=f"{uc.label}: MinVersion {min_text}")
        if not uc.resource.endswith("Collection"):
            return
        allow = _split_allow(await self.allow_of(uri))
        if uc.req.get("CreateResource", False):
            if allow is None:
                self.add(uri, "", True, None, Verdict.WARN, "Resource Capabilities Warning: No Allow header found")
            elif "POST" not in allow:
                self.add(uri, "", True, None, Verdict.FAIL,
                         "Resource Capabilities Error: 'POST' not found in the Allow header")
        try:
            member = payload["Members"][0]["@odata.id"]
        except (KeyError, IndexError, TypeError):
            member = None
        if member:
            member_allow = _split_allow(await self.allow_of(member))
            if member_allow is None:
                if uc.req.get("DeleteResource", False) or uc.req.get("UpdateResource", False):
                    self.add(uri, "", True, None, Verdict.WARN,
                             "Resource Capabilities Warning: No Allow header found for the member resource")
            else:
                if uc.req.get("DeleteResource", False) and "DELETE" not in member_allow:
                    self.add(uri, "", True, None, Verdict.FAIL,
                             "Resource Capabilities Error: 'DELETE' not found in the member's Allow header")
                if uc.req.get("UpdateResource", False) and not {"PUT", "PATCH"} & set(member_allow):
                    self.add(uri, "", True, None, Verdict.FAIL,
                             "Resource Capabilities Error: 'PUT' or 'PATCH' not found in the member's Allow header")

    async def validate_properties(self, props: dict[str, Any], uri: str, payload: dict[str, Any],
                                  full: dict[str, Any], path: str, parents: list[Any]) -> None:
        assert self.use_case is not None
        for prop, base_req in props.items():
            cur = f"{path}/{prop}"
            cur_wr = cur + " (Write)"
            req = (await self.conditional(base_req, uri, payload, full, parents)
                   if "ConditionalRequirements" in base_req else base_req)
            key = (id(req), self.use_case.index)
            cached = self._labels.get(key)
            if cached is None or cached[0] is not req:  # (the requirement itself is kept, so its id stays its own)
                cached = self._labels[key] = (req, f"{self.use_case.label}: {_describe(req)}")
            label = cached[1]
            purpose = req.get("Purpose")

            def add(p: str, present: bool, value: Any, verdict: Verdict, message: str,
                    _label: str = label, _purpose: Any = purpose, _ref: str = cur) -> None:
                self.add(uri, p, present, value, verdict, message, requirement=_label, purpose=_purpose,
                         ref=_ref if present else None)

            if "ReplacedByProperty" in req and _find(req["ReplacedByProperty"], payload, full)[0]:
                continue
            if "ReplacesProperty" in req and prop not in payload:
                if _find(req["ReplacesProperty"], payload, full)[0]:
                    add(cur, False, None, Verdict.WARN,
                        f"Replaced Property Warning: The property '{prop}' is preferred, but only the older "
                        f"property '{req['ReplacesProperty']}' is present")
                    continue
            read = req.get("ReadRequirement", "Mandatory")
            if read == "IfPopulated":
                _, state = _find("/Status/State", payload, full)
                if state != "Absent":
                    read = "Mandatory"
            present = prop in payload
            if read in ("Conditional", "None", "IfPopulated"):
                continue
            if read == "Excluded":
                if present:
                    add(cur, True, payload[prop], Verdict.FAIL,
                        f"Read Requirement Error: The property '{prop}' is not allowed")
                elif self.strict:  # deviation D6: an excluded property that is absent meets its requirement
                    add(cur, False, None, Verdict.PASS, "Property absent, as required")
                    continue
                else:
                    add(cur, False, None, Verdict.FAIL, f"Read Requirement Error: The property '{prop}' is not present")
            elif read in ("Recommended", "IfImplemented") and not present:
                add(cur, False, None, Verdict.SKIP, "Skip: The property is not present")
            elif read == "Supported":
                if not present:
                    add(cur, False, None, Verdict.SKIP, "Skip: The property is not present")
                self.add_global(uri, cur, present, "ReadSupport", [True])
            elif not present:
                add(cur, False, None, Verdict.FAIL, f"Read Requirement Error: The property '{prop}' is not present")
            if not present:
                continue
            value = payload[prop]
            add(cur, True, value, Verdict.PASS, "Property present")

            write = req.get("WriteRequirement", "None")
            if write != "None":
                await self._check_write(uri, payload, prop, value, write, cur_wr, label, purpose)

            if "MinCount" in req:
                # Filed under "<property> (Write)" as the reference files it (both modes; the message says it is a
                # MinCount failure). DSP0272 says nothing about result rows, so this is no deviation.
                where = cur_wr
                if isinstance(value, list):
                    if len(value) < req["MinCount"]:
                        add(where, True, value, Verdict.FAIL,
                            f"Min Count Error: The array contains {len(value)} elements, but requires at least "
                            f"{req['MinCount']}")
                else:
                    add(where, True, value, Verdict.WARN, "Min Count Error: The property is not an array")

            if "MinSupportValues" in req:
                allowed = payload.get(prop + "@Redfish.AllowableValues")
                if allowed is not None or prop + "@Redfish.AllowableValues" in payload:
                    if isinstance(allowed, list):
                        for want in req["MinSupportValues"]:
                            if want not in allowed:
                                add(cur_wr, True, value, Verdict.FAIL,
                                    f"Supported Values Error: The value '{want}' is not supported")
                    else:
                        add(cur_wr, True, value, Verdict.WARN,
                            f"Supported Values Error: '{prop}@Redfish.AllowableValues' is not an array")

            if "Values" in req:
                comparison = req.get("Comparison", "AnyOf")
                if comparison in ("AnyOf", "AllOf"):
                    self.add_global(uri, cur, value, comparison, list(req["Values"]))
                else:
                    msg = await self.compare(cur, comparison, list(req["Values"]), payload, full)
                    if msg is not None:
                        add(cur, True, value, Verdict.FAIL, msg)

            if "PropertyRequirements" in req:
                sub = req["PropertyRequirements"]
                if isinstance(value, list):
                    for i, item in enumerate(value):
                        if isinstance(item, dict):
                            await self.validate_properties(sub, uri, item, full, f"{cur}/{i}", [*parents, payload])
                        elif item is not None:
                            add(cur, True, value, Verdict.WARN,
                                "Property Requirements Warning: Unexpected non-object value in array")
                elif isinstance(value, dict):
                    await self.validate_properties(sub, uri, value, full, cur, [*parents, payload])
                else:
                    add(cur, True, value, Verdict.WARN, "Property Requirements Warning: Unexpected non-object value")

    async def _check_write(self, uri: str, payload: dict[str, Any], prop: str, value: Any, write: str,
                           cur_wr: str, label: str, purpose: Any) -> None:
        wlabel = f"{label}; WriteRequirement {write}"

        def add(verdict: Verdict, message: str) -> None:
            self.add(uri, cur_wr, True, value, verdict, message, requirement=wlabel, purpose=purpose,
                     ref=cur_wr[: -len(" (Write)")])

        allow = _split_allow(self.allow(uri))
        writable_resource = None if allow is None else ("PUT" in allow or "PATCH" in allow)
        if writable_resource is False:
            if write == "Mandatory":
                add(Verdict.FAIL, "Write Requirement Error: The resource is not writable")
            else:
                add(Verdict.SKIP, "Skip: The resource is not writable")
                if write == "Supported":
                    self.add_global(uri, cur_wr, False, "WriteSupport", [True])
        elif "@Redfish.WriteableProperties" in payload:
            if prop not in payload["@Redfish.WriteableProperties"]:
                if write == "Mandatory":
                    add(Verdict.FAIL, "Write Requirement Error: The property is not writable")
                else:
                    add(Verdict.SKIP, "Skip: The property is not writable")
                    if write == "Supported":
                        self.add_global(uri, cur_wr, False, "WriteSupport", [True])
            else:
                add(Verdict.PASS, "Pass: The property is writable")
                if write == "Supported":
                    self.add_global(uri, cur_wr, True, "WriteSupport", [True])
        else:
            add(Verdict.SKIP, "Skip: Cannot test")
            if write == "Supported":
                self.add_global(uri, cur_wr, None, "WriteSupport", [True])

    async def validate_actions(self, actions: dict[str, Any], uri: str, rtype: str, full: dict[str, Any]) -> None:
        assert self.use_case is not None
        for action, areq in actions.items():
            read = areq.get("ReadRequirement", "Mandatory")
            info_req = areq.get("ActionInfo", "None")
            path = f"/Actions/#{rtype}.{action}"
            label = f"{self.use_case.label}: action {action} {read}"
            purpose = areq.get("Purpose")
            if read == "None":
                continue
            found, obj = _find(path, {}, full)
            if not found:
                if read == "Mandatory":
                    self.add(uri, path, False, None, Verdict.FAIL,
                             f"Required Action Error: The action '{action}' is mandatory", requirement=label,
                             purpose=purpose)
                elif read == "Recommended":
                    self.add(uri, path, False, None, Verdict.SKIP, "Skip: The action is not present",
                             requirement=label, purpose=purpose)
                continue
            self.add(uri, path, True, obj, Verdict.PASS, "Action present", requirement=label, purpose=purpose)
            info_path = path + " (Action Info)"
            info_found, info_val = _find(path + "/@Redfish.ActionInfo", {}, full)
            if info_req != "None":
                ilabel = f"{self.use_case.label}: action {action} ActionInfo {info_req}"
                if not info_found:
                    if info_req == "Mandatory":
                        self.add(uri, info_path, False, None, Verdict.FAIL,
                                 "Required Action Info Error: The action info is mandatory", requirement=ilabel)
                    else:
                        self.add(uri, info_path, False, None, Verdict.SKIP, "Skip: The action info is not present",
                                 requirement=ilabel)
                else:
                    self.add(uri, info_path, True, info_val, Verdict.PASS, "Action info present", requirement=ilabel)
            if self.strict and areq.get("Parameters"):  # deviation D3: the reference does not check parameters
                await self._check_parameters(uri, path, action, areq["Parameters"], obj,
                                             info_val if info_found else None, purpose)

    async def _check_parameters(self, uri: str, path: str, action: str, params: dict[str, Any], obj: Any,
                                info_uri: Any, purpose: Any) -> None:
        assert self.use_case is not None
        info: dict[str, Any] | None = None
        if isinstance(info_uri, str) and info_uri.startswith("/"):
            info = await self.get(info_uri)
        info_params: dict[str, Any] = {}
        if info and isinstance(info.get("Parameters"), list):
            for p in info["Parameters"]:
                if isinstance(p, dict) and isinstance(p.get("Name"), str):
                    info_params[p["Name"]] = p
        for name, preq in params.items():
            read = preq.get("ReadRequirement", "Mandatory")
            ppath = f"{path}/{name}"
            want = list(preq.get("ParameterValues", []))
            recommended = list(preq.get("RecommendedValues", []))
            label = (f"{self.use_case.label}: action {action} parameter {name} {read}"
                     + (f" values {want}" if want else "") + (f" recommended {recommended}" if recommended else ""))

            def add(verdict: Verdict, message: str, value: Any = None, present: bool = True,
                    _p: str = ppath, _label: str = label) -> None:
                self.add(uri, _p, present, value, verdict, message, requirement=_label, purpose=purpose)

            allowed: Any = None
            declared = False
            if isinstance(obj, dict) and f"{name}@Redfish.AllowableValues" in obj:
                allowed, declared = obj[f"{name}@Redfish.AllowableValues"], True
            elif name in info_params:
                allowed, declared = info_params[name].get("AllowableValues"), True
            if read == "None":
                continue
            if not declared:
                if info is not None and read == "Mandatory":
                    add(Verdict.FAIL, f"Action Parameter Error: '{name}' is not listed in the action's ActionInfo",
                        present=False)
                else:
                    add(Verdict.SKIP, f"Skip: the service does not declare the values of '{name}'", present=False)
                continue
            if not isinstance(allowed, list):
                add(Verdict.SKIP if not want else Verdict.WARN,
                    f"Action Parameter Warning: no allowable values are declared for '{name}'", allowed)
                continue
            missing = [v for v in want if v not in allowed]
            missing_rec = [v for v in recommended if v not in allowed]
            if missing:
                add(Verdict.FAIL, f"Action Parameter Error: {name} does not allow {', '.join(map(str, missing))}",
                    allowed)
            elif missing_rec:
                add(Verdict.WARN,
                    f"Action Parameter Warning: {name} does not allow the recommended "
                    f"{', '.join(map(str, missing_rec))}", allowed)
            else:
                add(Verdict.PASS, "Parameter values supported", allowed)

    # ---- the walk -------------------------------------------------------------------------------------------
    def find_uris(self, payload: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The links to follow from a resource, in the reference's order, and those found under settings or
        capabilities objects (read, never validated). The resource's own ``@odata.id`` is not a link."""
        out: list[str] = []
        ann: list[str] = []
        no_oem = self.opts.no_oem

        def scan(obj: Any, from_annotation: bool, top: bool = False) -> None:
            if isinstance(obj, dict):
                odata_type = obj.get("@odata.type")
                if isinstance(odata_type, str) and odata_type.startswith("#JsonSchemaFile."):
                    return
                for key, value in obj.items():
                    if key in LINK_KEYS:
                        if top and key == "@odata.id":
                            continue
                        if isinstance(value, str) and value.startswith("/") and "#" not in value:
                            out.append(value.rstrip("/"))
                            if from_annotation:
                                ann.append(value)
                    elif isinstance(value, _CONTAINERS):
                        if key == "OriginOfCondition" or (no_oem and key == "Oem"):
                            continue
                        if key in ("CapabilitiesObject", "SettingsObject"):
                            from_annotation = True  # the reference keeps this for the later keys too
                        scan(value, from_annotation)
            else:
                for item in obj:
                    if isinstance(item, _CONTAINERS):
                        scan(item, from_annotation)

        scan(payload, False, True)
        return out, ann

    def links_of(self, uri: str, payload: dict[str, Any]) -> tuple[list[str], list[str]]:
        """:meth:`find_uris` of a resource's (limited) payload, worked out once per URI (prefetch and walk)."""
        links = self._links.get(uri)
        if links is None:
            links = self._links[uri] = self.find_uris(payload)
        return links

    def limited(self, payload: dict[str, Any]) -> dict[str, Any]:
        odata_type = payload.get("@odata.type")
        if isinstance(odata_type, str) and odata_type.endswith("Collection"):
            m = _COLLECTION.match(odata_type)
            if m and m.group(1) in self.opts.collection_limits:
                payload = dict(payload)
                if isinstance(payload.get("Members"), list):
                    payload["Members"] = payload["Members"][: self.opts.collection_limits[m.group(1)]]
                payload.pop("Members@odata.nextLink", None)
        return payload

    async def prefetch(self, start: str) -> None:
        """Read everything the walk will visit, many requests at a time (the walk then only hits the cache)."""
        seen = {start}
        annotations: set[str] = set()
        queue: asyncio.Queue[str] = asyncio.Queue()
        queue.put_nowait(start)

        async def worker() -> None:
            while True:
                uri = await queue.get()
                try:
                    payload = await self.get(uri)
                    if isinstance(payload, dict):
                        out, ann = self.links_of(uri, self.limited(payload))
                        annotations.update(ann)
                        for nxt in out:
                            if nxt not in seen and nxt not in annotations and self.wanted(nxt):
                                seen.add(nxt)
                                queue.put_nowait(nxt)
                except Exception:  # the walk reads it again and records what is wrong
                    pass
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(max(1, self.opts.concurrency))]
        try:
            await queue.join()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def walk(self, start: str = SERVICE_ROOT) -> None:
        stack: list[tuple[str | None, Iterator[str]]] = [(None, iter([start]))]
        while stack:
            try:
                uri = next(stack[-1][1])
            except StopIteration:
                stack.pop()
                continue
            if uri in self.validated or uri in self.annotation_uris:
                continue
            if not self.wanted(uri):
                continue
            self.validated.add(uri)
            self.parent[uri] = stack[-1][0]
            payload = await self.get(uri)
            if not isinstance(payload, dict):
                continue
            payload = self.limited(payload)
            self.evaluating = True
            try:
                await self.validate_one(uri, payload)
            finally:
                self.evaluating = False
            out, ann = self.links_of(uri, payload)
            self.annotation_uris.update(ann)
            stack.append((uri, iter(out)))

    def learned_template(self) -> PlanTemplate:
        """What this (fully read) node needed: resources with requirements, what their checks read, and the
        links that led to them."""
        needed = set(self.demand)
        for found in self.found_uris.values():
            needed.update(found)
        relevant: set[str] = set()
        for uri in needed:
            cur: str | None = uri
            while cur is not None and cur not in relevant:
                relevant.add(cur)
                cur = self.parent.get(cur)
        known = set(self.validated) | self.annotation_uris
        return PlanTemplate(frozenset(relevant), frozenset(known))

    def _found(self, uc: UseCase, uri: str) -> None:
        if self._ops is not None:
            self._ops.append(("found", uc, (uri,)))
        seen = self._found_sets.setdefault(uc.index, set())
        if uri not in seen:  # (a set beside the list: a node has hundreds of log entries of one use case)
            seen.add(uri)
            self.found_uris.setdefault(uc.index, []).append(uri)

    async def validate_one(self, uri: str, payload: dict[str, Any]) -> None:
        odata_type = payload.get("@odata.type")
        if not isinstance(odata_type, str):
            return
        rtype = odata_type.split(".")[-1]
        if not self.profiles.use_cases_for(rtype):
            return
        memo = self.opts.plan.memo if self.opts.plan is not None else None
        key = memo.key(self.profiles, self.platform, rtype, uri, payload) if memo is not None else None
        if memo is None or key is None:
            await self._judge(rtype, uri, payload)
            return
        known = memo.get(key)
        # Replayed only on a follower: the node that learns its platform's plan must read what its checks read.
        if known is not None and self.template is not None and await self._deps_hold(known.deps):
            if memo.verify:
                await self._verify_replay(memo, known, rtype, uri, payload)
            if self._replay(known, payload):
                memo.hits += 1
                return
        memo.misses += 1
        self._found_refs, self._ops, self._deps = {}, [], []
        try:
            await self._judge(rtype, uri, payload)
            rows = [(k, self.rows[k], ref) for k, ref in self._found_refs.items()]
            recording = Recording([(k, r.resource, r.verdict, r.found, r.present, tuple(r.messages),
                                    tuple(r.requirements), tuple(r.purposes), ref) for k, r, ref in rows],
                                  self._ops, self._deps)
        finally:
            self._found_refs = self._ops = self._deps = None
        memo.put(key, recording)

    async def _deps_hold(self, deps: list[tuple[str, str, Any]]) -> bool:
        """Whether what a recorded judgement read besides its resource reads the same on this node."""
        for kind, uri, value in deps:
            if kind == "allow":
                if self._allow(uri) != value:
                    return False
            elif kind == "type":
                if resource_type_of(await self._read(uri))[0] != value:
                    return False
            elif await self._read(uri) != value:
                return False
        return True

    def _replay(self, known: Recording, payload: dict[str, Any]) -> bool:
        """This node's results from a recorded judgement (False, and nothing done, if the resource has rows
        already: then it is judged)."""
        rows = self.rows
        if any(snap[0] in rows for snap in known.rows):
            return False
        for key, resource, verdict, found, present, messages, requirements, purposes, ref in known.rows:
            if ref is not None and type(found) in _OWN_VALUE:  # the memo kept only the value's type: show ours
                there, own = _find(ref, {}, payload)
                if there and type(own) in _OWN_VALUE:
                    found = own
            rows[key] = Row(resource, key[0], key[1], verdict, found, present, list(messages), list(requirements),
                            list(purposes))
        try:
            for kind, uc, args in known.ops:
                self.use_case = uc
                if kind == "global":
                    self.add_global(*args)
                else:
                    self._found(uc, *args)
        finally:
            self.use_case = None
        return True

    async def _verify_replay(self, memo: VerdictMemo, known: Recording, rtype: str, uri: str,
                             payload: dict[str, Any]) -> None:
        """Judge the resource again on a scratch evaluation and compare with the replay (tests, diagnosis)."""
        def snapshot(ev: Evaluation) -> Any:
            rows = [(k, r.resource, r.verdict, r.found, r.present, r.messages, r.requirements, r.purposes)
                    for k, r in ev.rows.items()]
            checks = {k: (c["found"], c["where"]) for k, c in ev.global_checks.items()}
            return rows, checks, ev.found_uris

        full = Evaluation(self.profiles, self.source, self.opts)
        await full._judge(rtype, uri, payload)
        replay = Evaluation(self.profiles, self.source, self.opts)
        replay._replay(known, payload)
        if snapshot(full) != snapshot(replay):
            memo.mismatches.append(uri)

    async def _judge(self, rtype: str, uri: str, payload: dict[str, Any]) -> None:
        for uc in await self.applicable_use_cases(rtype, uri, payload):
            self.use_case = uc
            try:
                await self.validate_resource(uc, uri, payload)
                if "PropertyRequirements" in uc.req:
                    await self.validate_properties(uc.req["PropertyRequirements"], uri, payload, payload, "", [])
                if "ActionRequirements" in uc.req:
                    await self.validate_actions(uc.req["ActionRequirements"], uri, rtype, payload)
            finally:
                self.use_case = None

    # ---- service-wide checks --------------------------------------------------------------------------------
    def service_checks(self) -> list[Row]:
        service: dict[str, Row] = {}
        result: tuple[Verdict, str] = (Verdict.SKIP, "Resource not found")
        for uc in self.profiles.all_use_cases():
            read = uc.read_requirement
            found = self.found_uris.get(uc.index, [])
            if not found:
                if read in ("Mandatory", "Supported"):
                    result = (Verdict.FAIL, "Required Resource Error: Resource not found")
                elif read in ("Recommended", "IfImplemented", "IfPopulated"):
                    result = (Verdict.SKIP, "Resource not found")
                elif self.strict:  # deviation D6: the reference reuses the previous use case's result here
                    result = ((Verdict.PASS, "Resource not present, as required") if read == "Excluded"
                              else (Verdict.SKIP, "Resource not found"))
            elif read == "Excluded":
                result = (Verdict.FAIL, "Disallowed Resource Error: Resource found but it is not allowed")
            else:
                result = (Verdict.PASS, "Resource found")
            label = f"{uc.label}: resource {read}"
            row = service.get(uc.resource)
            if row is None:
                row = Row(uc.resource, None, "", result[0], len(found), bool(found), [result[1]])
                service[uc.resource] = row
            else:
                if row.verdict <= Verdict.PASS:
                    row.messages = [result[1]]
                elif result[0] > Verdict.PASS:
                    row.messages.append(result[1])
                row.verdict = max(row.verdict, result[0])
                row.found = max(int(row.found or 0), len(found))
                row.present = row.present or bool(found)
            row.requirements.append(label)
            if uc.req.get("Purpose"):
                row.purposes.append(str(uc.req["Purpose"]))
        for check in self.global_checks.values():
            expected = check["expected"]
            found_values = check["found"]
            dumped = ", ".join(json.dumps(v) for v in expected)
            msg = None
            if check["comparison"] == "AnyOf":
                if not any(v in found_values for v in expected):
                    msg = ("Comparison Error: The property, across all instances in the service, does not contain "
                           f"one of the required values: {dumped}")
            elif check["comparison"] == "AllOf":
                if any(v not in found_values for v in expected):
                    msg = ("Comparison Error: The property, across all instances in the service, does not contain "
                           f"all of the required values: {dumped}")
            elif check["comparison"] == "ReadSupport":
                if True not in found_values:
                    msg = "Read Requirement Error: The property is not present on any instances of the resource"
            elif True not in found_values and None not in found_values:
                msg = "Write Requirement Property Error: The property is not writable on any instances of the resource"
            if msg is not None:
                self.use_case = check["use_case"]
                for uri, prop in check["where"]:
                    self.add(uri, prop, True, None, Verdict.FAIL, msg)
                self.use_case = None
        return list(service.values())


@dataclass(frozen=True)
class PlanTemplate:
    relevant: frozenset[str]  # URIs a node of this platform needed
    known: frozenset[str]  # every URI the template node had


class WaitingRoom:
    """Lets a fleet target that waits for its platform's template hand its fleet slot to another target meanwhile,
    so that the followers of one slow-to-learn platform do not hold every slot while it is learned. At most
    ``limit`` targets wait outside their slot at once (each keeps a connection open); past that a target waits in
    its slot, as before."""

    def __init__(self, slots: asyncio.Semaphore, limit: int) -> None:
        self.slots = slots
        self.limit = limit
        self.waiting = 0

    async def enter(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        self.slots.release()
        return True

    async def leave(self) -> None:
        self.waiting -= 1
        await self.slots.acquire()


# Set by redfleet.profiles.fleet.validate_fleet for each target's task.
WAITING_ROOM: ContextVar[WaitingRoom | None] = ContextVar("redfleet_profiles_waiting_room", default=None)


class FleetPlan:
    """Shared by the targets of one fleet run: the first node of each platform (same service root shape, vendor,
    product and Redfish version) is read in full; the others read what it needed, plus any URI it never had.
    Verdicts equal a full read whenever nodes of a platform differ only in values and in members of collections
    that matter (the benchmark checks this against full reads). With a ``memo``, a follower's resource whose
    requirement-relevant content was judged before on another node is not judged again (see
    :mod:`redfleet.profiles.memo`)."""

    def __init__(self, memo: VerdictMemo | None = None) -> None:
        self.templates: dict[str, PlanTemplate] = {}
        self._pending: dict[str, asyncio.Event] = {}
        self.memo = memo

    @staticmethod
    def key(root: dict[str, Any]) -> str:
        shape = sorted(k for k in root if not k.startswith("@") and k not in ("UUID", "Id", "Name", "Description"))
        oem = sorted((root.get("Oem") or {}).keys()) if isinstance(root.get("Oem"), dict) else []
        return json.dumps([root.get("Vendor"), root.get("Product"), root.get("RedfishVersion"), shape, oem])

    async def template_for(self, key: str) -> PlanTemplate | None:
        while True:
            if key in self.templates:
                return self.templates[key]
            event = self._pending.get(key)
            if event is None:
                self._pending[key] = asyncio.Event()
                return None  # this target learns the platform
            room = WAITING_ROOM.get()
            entered = room is not None and await room.enter()
            try:
                await event.wait()
            finally:
                if entered and room is not None:
                    await room.leave()

    def publish(self, key: str, template: PlanTemplate) -> None:
        self.templates[key] = template
        event = self._pending.pop(key, None)
        if event:
            event.set()

    def abandon(self, key: str) -> None:
        event = self._pending.pop(key, None)
        if event:
            event.set()


_USE_CASE_PARENTS = {
    "ChassisType": ("Chassis", "/ChassisType"),
    "DriveProtocol": ("Drive", "/Protocol"),
    "MemoryType": ("Memory", "/MemoryType"),
    "PortProtocol": ("Port", "/Protocol"),
    "ProcessorType": ("Processor", "/ProcessorType"),
}


def _split_allow(header: str | None) -> list[str] | None:
    if not header:
        return None
    return [a.strip().upper() for a in header.split(",")]


def _equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fail_text(ctype: str, dumped: str) -> str:
    if ctype == "LinkToResource":
        return f"Comparison Error: The property does not link to a resource of the expected types: {dumped}"
    if ctype == "Pattern":
        return f"Comparison Error: The property does not match one of the expected patterns: {dumped}"
    return f"Comparison Error: The property does not contain one of the expected values: {dumped}"


def _ordered(ctype: str, item: Any, cv: Any) -> str | None:
    try:
        if ctype == "NotEqual" and cv == item:
            return f"Comparison Error: The property contains '{cv}', but is not allowed"
        if ctype == "GreaterThan" and item <= cv:
            return f"Comparison Error: The property value '{item}' is not greater than '{cv}'"
        if ctype == "GreaterThanOrEqual" and item < cv:
            return f"Comparison Error: The property value '{item}' is not greater than or equal to '{cv}'"
        if ctype == "LessThan" and item >= cv:
            return f"Comparison Error: The property value '{item}' is not less than '{cv}'"
        if ctype == "LessThanOrEqual" and item > cv:
            return f"Comparison Error: The property value '{item}' is not less than or equal to '{cv}'"
    except TypeError:
        return None
    return None


def _range(values: list[Any], item: Any) -> str | None:
    lo, hi, nominal = ([*list(values), None, None, None])[:3]
    note = f" (nominal value: {nominal})" if nominal is not None else ""
    msg = None
    try:
        if lo is not None and item < lo:
            msg = f"Comparison Error: The property value '{item}' is below the minimum allowed value '{lo}'{note}"
        if hi is not None and item > hi:
            msg = f"Comparison Error: The property value '{item}' is above the maximum allowed value '{hi}'{note}"
    except TypeError:
        msg = f"Comparison Error: The property value '{item}' is not a number"
    return msg


def _describe(req: dict[str, Any]) -> str:
    parts = [str(req.get("ReadRequirement", "Mandatory"))]
    if req.get("WriteRequirement", "None") != "None":
        parts.append(f"write {req['WriteRequirement']}")
    if "MinCount" in req:
        parts.append(f"MinCount {req['MinCount']}")
    if "Values" in req:
        parts.append(f"{req.get('Comparison', 'AnyOf')} {json.dumps(req['Values'])}")
    if "MinSupportValues" in req:
        parts.append(f"MinSupportValues {json.dumps(req['MinSupportValues'])}")
    cond = req.get("_condition")
    if cond is not None:
        what = cond.get("Purpose") or (
            f"{cond.get('CompareProperty')} {cond.get('CompareType')} {json.dumps(cond.get('CompareValues', []))}"
            if "CompareProperty" in cond else "condition"
        )
        parts.append(f"(conditional: {what})")
    return ", ".join(parts)


async def service_info(source: Any) -> dict[str, Any]:
    """Vendor, model and firmware of the service (from the service root, the first system and the first manager)."""
    info: dict[str, Any] = {}
    root = await source.get(SERVICE_ROOT) or {}
    info["redfish_version"] = root.get("RedfishVersion")
    info["product"] = root.get("Product")
    info["vendor"] = root.get("Vendor")

    async def first(collection: Any) -> dict[str, Any]:
        if not isinstance(collection, dict) or not isinstance(collection.get("@odata.id"), str):
            return {}
        coll = await source.get(collection["@odata.id"]) or {}
        members = coll.get("Members") if isinstance(coll.get("Members"), list) else []
        for m in members or []:
            if isinstance(m, dict) and isinstance(m.get("@odata.id"), str):
                return await source.get(m["@odata.id"]) or {}
        return {}

    system, manager = await asyncio.gather(first(root.get("Systems")), first(root.get("Managers")))
    info["manufacturer"] = system.get("Manufacturer") or manager.get("Manufacturer") or root.get("Vendor")
    info["model"] = system.get("Model") or manager.get("Model")
    info["bios_version"] = system.get("BiosVersion")
    info["bmc_firmware"] = manager.get("FirmwareVersion")
    info["bmc_model"] = manager.get("Model")
    return {k: v for k, v in info.items() if v is not None}


async def validate_source(source: Any, profiles: ProfileSet, options: Options | None = None, target: str = "",
                          start: str = SERVICE_ROOT) -> TargetResult:
    """Validate one service, read through ``source``, against ``profiles``."""
    import time

    options = options or Options()
    began = time.perf_counter()
    cached = source if isinstance(source, CachedSource) else CachedSource(source)
    ev = Evaluation(profiles, cached, options)
    root = await cached.get(start)
    if root is None:
        result = TargetResult(target, profiles.label, [], error=f"cannot read the service root {start}")
        result.elapsed_s = time.perf_counter() - began
        return result
    plan = options.plan
    key = plan.key(root) if plan is not None else None
    learning = False
    if plan is not None and key is not None:
        ev.platform = key
        ev.template = await plan.template_for(key)
        learning = ev.template is None
    try:
        await ev.prefetch(start)
        await ev.walk(start)
    except BaseException:
        if learning and plan is not None and key is not None:
            plan.abandon(key)
        raise
    if learning and plan is not None and key is not None:
        plan.publish(key, ev.learned_template())
    service_rows = ev.service_checks()
    rows = service_rows + list(ev.rows.values())
    result = TargetResult(target, profiles.label, rows, service_info=await service_info(cached))
    result.resources_read = cached.reads
    result.resources_validated = len(ev.validated)
    result.elapsed_s = time.perf_counter() - began
    return result
