"""Loading Redfish Interoperability Profiles (DMTF DSP0272) and resolving ``RequiredProfiles``.

A profile is named by a file path or by name (``OCPServerHardwareManagement``, optionally with a version,
``OCPServerHardwareManagement.v1_1_0`` or ``...@1.1.0``). Names and ``RequiredProfiles`` are looked up in a list of
profile directories: the directory of the profile that asks, then the directories given by the caller
(``--profile-dir``), then the profiles shipped with redfleet, then the OCP profiles in ``../shared``. For a required
profile the newest file with the same major version and at least ``MinVersion`` is taken (as the DMTF tool does);
file names may spell the version ``v1_1_0`` or ``v1.1.0``, and a file whose ``ProfileName``/``ProfileVersion`` match
is found even under another name.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from redfleet.paths import shared_dir

READ_REQUIREMENTS = ("Mandatory", "Supported", "Recommended", "IfImplemented", "IfPopulated", "Conditional",
                     "Excluded", "None")
WRITE_REQUIREMENTS = ("Mandatory", "Supported", "Recommended", "None")
COMPARISONS = ("Absent", "AnyOf", "AllOf", "Equal", "NotEqual", "GreaterThan", "GreaterThanOrEqual", "LessThan",
               "LessThanOrEqual", "Present", "LinkToResource", "Range", "Pattern")
USE_CASE_TYPES = ("Normal", "AbsentResource", "ChassisType", "DriveProtocol", "MemoryType", "PortProtocol",
                  "ProcessorType")
PROTOCOL_REQUIREMENTS = ("Mandatory", "Recommended", "None")

_FILE_VERSION = re.compile(r"\.v(\d+)[_.](\d+)[_.](\d+)\.json$", re.IGNORECASE)


class ProfileError(ValueError):
    """A profile that cannot be found, read or used; the message says which and why."""


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """``"1.2"``, ``"1.2.3"``, ``"v1_2_3"`` → ``(1, 2, 3)`` (missing parts are 0); None when not a version."""
    if not text:
        return None
    m = re.fullmatch(r"v?(\d+)[._](\d+)(?:[._](\d+))?", text.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass
class UseCase:
    """One resource use case (a resource entry without ``UseCases`` is one use case titled ``Default``)."""

    profile: Profile
    resource: str
    title: str
    index: int  # unique across a ProfileSet; keys the checks that span all instances
    req: dict[str, Any]

    @property
    def read_requirement(self) -> str:
        return str(self.req.get("ReadRequirement", "Mandatory"))

    @cached_property
    def label(self) -> str:
        return f"{self.profile.label} / {self.resource}" + ("" if self.title == "Default" else f" [{self.title}]")


@dataclass
class Profile:
    name: str
    version: str
    path: Path | None
    raw: dict[str, Any]
    use_cases: dict[str, list[UseCase]] = field(default_factory=dict)
    required: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def protocol(self) -> dict[str, Any]:
        value = self.raw.get("Protocol")
        return value if isinstance(value, dict) else {}


@dataclass
class ProfileSet:
    """A profile and every profile it requires, in the order the DMTF tool loads them (depth first)."""

    profiles: list[Profile]

    @property
    def main(self) -> Profile:
        return self.profiles[0]

    @property
    def label(self) -> str:
        return self.main.label

    def use_cases_for(self, resource_type: str) -> list[UseCase]:
        out: list[UseCase] = []
        for profile in self.profiles:
            out.extend(profile.use_cases.get(resource_type, ()))
        return out

    def all_use_cases(self) -> list[UseCase]:
        return [uc for p in self.profiles for cases in p.use_cases.values() for uc in cases]


def shipped_profiles_dir() -> Path:
    return Path(str(resources.files("redfleet.profiles") / "data"))


def default_search_dirs(extra: list[Path] | None = None) -> list[Path]:
    dirs = list(extra or [])
    dirs.append(shipped_profiles_dir())
    dirs.append(shared_dir() / "redfish" / "profiles")
    return dirs


def check_profile_document(doc: Any, source: str) -> None:
    """Structural checks that catch a broken profile before any target is read.

    This is not a full JSON-schema validation (redfleet does not ship the DMTF schema); the tests validate every
    profile we ship and every OCP profile against the DMTF schema with jsonschema.
    """
    if not isinstance(doc, dict):
        raise ProfileError(f"{source}: a profile is a JSON object")
    for key in ("ProfileName", "ProfileVersion"):
        if not isinstance(doc.get(key), str):
            raise ProfileError(f"{source}: {key} is missing or not a string")
    problems: list[str] = []

    def enum(where: str, value: Any, allowed: tuple[str, ...]) -> None:
        if value is not None and value not in allowed:
            problems.append(f"{where}: {value!r} is not one of {', '.join(allowed)}")

    def prop_req(where: str, req: Any) -> None:
        if not isinstance(req, dict):
            problems.append(f"{where}: expected an object")
            return
        enum(f"{where}.ReadRequirement", req.get("ReadRequirement"), READ_REQUIREMENTS)
        enum(f"{where}.WriteRequirement", req.get("WriteRequirement"), WRITE_REQUIREMENTS)
        enum(f"{where}.Comparison", req.get("Comparison"), COMPARISONS)
        if "Values" in req and not isinstance(req["Values"], list):
            problems.append(f"{where}.Values: expected an array")
        if "MinCount" in req and not isinstance(req["MinCount"], int):
            problems.append(f"{where}.MinCount: expected an integer")
        for i, cond in enumerate(req.get("ConditionalRequirements") or []):
            cw = f"{where}.ConditionalRequirements[{i}]"
            if not isinstance(cond, dict):
                problems.append(f"{cw}: expected an object")
                continue
            enum(f"{cw}.ReadRequirement", cond.get("ReadRequirement"), READ_REQUIREMENTS)
            enum(f"{cw}.WriteRequirement", cond.get("WriteRequirement"), WRITE_REQUIREMENTS)
            enum(f"{cw}.CompareType", cond.get("CompareType"), COMPARISONS)
            enum(f"{cw}.Comparison", cond.get("Comparison"), COMPARISONS)
        for name, sub in (req.get("PropertyRequirements") or {}).items():
            prop_req(f"{where}.{name}", sub)

    for rname, entry in (doc.get("Resources") or {}).items():
        if not isinstance(entry, dict):
            problems.append(f"Resources.{rname}: expected an object")
            continue
        cases = entry["UseCases"] if "UseCases" in entry else [entry]
        for i, case in enumerate(cases):
            where = f"Resources.{rname}" + (f".UseCases[{i}]" if "UseCases" in entry else "")
            prop_req(where, case)
            enum(f"{where}.UseCaseType", case.get("UseCaseType"), USE_CASE_TYPES)
            enum(f"{where}.UseCaseComparison", case.get("UseCaseComparison"), COMPARISONS)
            for aname, action in (case.get("ActionRequirements") or {}).items():
                enum(f"{where}.ActionRequirements.{aname}.ReadRequirement", action.get("ReadRequirement"),
                     READ_REQUIREMENTS)
    for pname, value in (doc.get("Protocol") or {}).items():
        if pname not in ("MinVersion", "ErrorResponse"):
            enum(f"Protocol.{pname}", value, PROTOCOL_REQUIREMENTS)
    if problems:
        raise ProfileError(f"{source}: " + "; ".join(problems[:10]) + (" …" if len(problems) > 10 else ""))


def _build(doc: dict[str, Any], path: Path | None, counter: list[int]) -> Profile:
    raw = copy.deepcopy(doc)
    profile = Profile(name=raw["ProfileName"], version=raw["ProfileVersion"], path=path, raw=raw)
    for rname, entry in (raw.get("Resources") or {}).items():
        cases = entry["UseCases"] if "UseCases" in entry else [entry]
        built: list[UseCase] = []
        for i, case in enumerate(cases):
            title = case.get("UseCaseTitle") or ("Default" if "UseCases" not in entry else f"Use Case {i + 1}")
            built.append(UseCase(profile, rname, title, counter[0], case))
            counter[0] += 1
        profile.use_cases[rname] = built
    for rname, spec in (raw.get("RequiredProfiles") or {}).items():
        profile.required.append((rname, (spec or {}).get("MinVersion", "0.0.0")))
    return profile


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ProfileError(f"{path}: not valid JSON: {exc}") from exc
    check_profile_document(doc, str(path))
    return doc


def _candidates(name: str, dirs: list[Path]) -> list[tuple[tuple[int, int, int], Path]]:
    """Profile files for ``name`` in ``dirs``, with their versions (from the file name, else from the file)."""
    out: list[tuple[tuple[int, int, int], Path]] = []
    seen: set[Path] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.json")):
            if f in seen:
                continue
            m = _FILE_VERSION.search(f.name)
            stem = f.name[: m.start()] if m else f.name[:-5]
            if stem == name and m:
                out.append(((int(m.group(1)), int(m.group(2)), int(m.group(3))), f))
                seen.add(f)
                continue
            if stem.lower().startswith(name.lower()[:6]) or stem == name:
                try:
                    doc = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                v = parse_version(doc.get("ProfileVersion")) if isinstance(doc, dict) else None
                if isinstance(doc, dict) and doc.get("ProfileName") == name and v:
                    out.append((v, f))
                    seen.add(f)
    return out


def find_profile(name: str, dirs: list[Path], min_version: str | None = None, exact: bool = False) -> Path:
    """The file for profile ``name``: the newest one with ``min_version``'s major and at least that version."""
    want = parse_version(min_version) if min_version else None
    found = _candidates(name, dirs)
    if want is not None:
        if exact:
            found = [(v, f) for v, f in found if v == want]
        else:
            found = [(v, f) for v, f in found if v[0] == want[0] and v >= want]
    if not found:
        where = ", ".join(str(d) for d in dirs)
        ver = f" version {min_version}" + ("" if exact else " or newer") if min_version else ""
        raise ProfileError(f"profile {name}{ver} not found in {where}")
    found.sort(key=lambda item: item[0])
    return found[-1][1]


def resolve_profile_arg(arg: str, extra_dirs: list[Path] | None = None) -> Path:
    """A ``--profile`` argument: an existing file, or a name (``Name``, ``Name.v1_1_0``, ``Name@1.1.0``)."""
    path = Path(arg)
    if path.suffix.lower() == ".json" and path.is_file():
        return path
    dirs = default_search_dirs(extra_dirs)
    name, version = arg, None
    if "@" in arg:
        name, version = arg.split("@", 1)
    else:
        m = re.fullmatch(r"(.+?)\.v(\d+[_.]\d+[_.]\d+)(?:\.json)?", arg)
        if m:
            name, version = m.group(1), m.group(2).replace("_", ".")
    if path.suffix.lower() == ".json" and version is None:
        raise ProfileError(f"profile file {arg} does not exist")
    return find_profile(name, dirs, version, exact=version is not None)


def _load(doc: dict[str, Any], path: Path | None, extra_dirs: list[Path] | None) -> ProfileSet:
    counter = [0]
    loaded: list[Profile] = []
    seen: set[Path] = set()

    def visit(doc: dict[str, Any], p: Path | None) -> None:
        profile = _build(doc, p, counter)
        loaded.append(profile)
        dirs = ([p.parent] if p else []) + default_search_dirs(extra_dirs)
        for req_name, min_ver in profile.required:
            try:
                req_path = find_profile(req_name, dirs, min_ver).resolve()
            except ProfileError as exc:
                raise ProfileError(f"{profile.label} requires {req_name} {min_ver}: {exc}") from exc
            if req_path in seen:
                continue
            seen.add(req_path)
            visit(_read(req_path), req_path)

    if path is not None:
        seen.add(path)
    visit(doc, path)
    return ProfileSet(loaded)


def load_profile(path_or_name: str | Path, extra_dirs: list[Path] | None = None) -> ProfileSet:
    """Load a profile and, depth first, its ``RequiredProfiles`` (each file once, cycles allowed)."""
    path = Path(path_or_name) if isinstance(path_or_name, Path) else resolve_profile_arg(path_or_name, extra_dirs)
    path = path.resolve()
    return _load(_read(path), path, extra_dirs)


def load_profile_document(doc: dict[str, Any], extra_dirs: list[Path] | None = None) -> ProfileSet:
    """Load a profile given as a parsed document (tests, the API); required profiles come from the search dirs."""
    check_profile_document(doc, "<profile>")
    return _load(doc, None, extra_dirs)


def list_profiles(extra_dirs: list[Path] | None = None) -> list[tuple[str, str, Path]]:
    """(name, version, path) of every profile in the search directories."""
    out: list[tuple[str, str, Path]] = []
    for d in default_search_dirs(extra_dirs):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and "ProfileName" in doc:
                out.append((str(doc["ProfileName"]), str(doc.get("ProfileVersion", "?")), f))
    return out
