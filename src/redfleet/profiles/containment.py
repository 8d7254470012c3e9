"""Which Redfish resource types can hold which, from the DMTF CSDL: lets a fleet run skip collections that cannot
contain anything a profile asks about (log entries, schema files, registries, certificates...).

``data/containment.json`` maps each schema (``Processor``) to the schemas its navigation properties can lead to,
leaving out the ``Links`` objects (references to resources that live elsewhere in the tree). It is derived from the
CSDL bundle in ``../shared/redfish/csdl`` by ``python -m redfleet.profiles.containment CSDL_DIR``.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache
from importlib import resources
from pathlib import Path

_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def _target(type_name: str) -> str:
    inner = type_name[len("Collection(") : -1] if type_name.startswith("Collection(") else type_name
    return inner.split(".")[0]


def derive(csdl_dir: Path) -> dict[str, list[str]]:
    graph: dict[str, set[str]] = {}
    for file in sorted(csdl_dir.glob("*_v1.xml")):
        base = file.name[: -len("_v1.xml")]
        edges = graph.setdefault(base, set())
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError:
            continue
        for schema in root.iter(f"{_EDM}Schema"):
            for holder in list(schema):
                if holder.tag == f"{_EDM}ComplexType" and holder.get("Name", "").endswith("Links"):
                    continue
                for nav in holder.iter(f"{_EDM}NavigationProperty"):
                    target = _target(nav.get("Type", ""))
                    if target and target != "Resource":
                        edges.add(target)
    return {k: sorted(v) for k, v in sorted(graph.items())}


@lru_cache(maxsize=1)
def containment() -> dict[str, frozenset[str]]:
    try:
        text = (resources.files("redfleet.profiles") / "data" / "containment.json").read_text()
    except (OSError, FileNotFoundError):
        return {}
    raw = json.loads(text)
    return {k: frozenset(v) for k, v in raw.items()}


def closure(type_name: str, graph: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """Every schema reachable from ``type_name``; None when the type is unknown (then nothing may be skipped)."""
    if type_name not in graph:
        return None
    seen: set[str] = set()
    stack = [type_name]
    while stack:
        t = stack.pop()
        for nxt in graph.get(t, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return frozenset(seen)


def skippable_member_types(wanted: set[str]) -> frozenset[str]:
    """Member types whose instances (and everything under them) hold no resource of a ``wanted`` type."""
    graph = containment()
    out: set[str] = set()
    wanted_bases = {w[: -len("Collection")] if w.endswith("Collection") else w for w in wanted} | set(wanted)
    for t in graph:
        if t in wanted_bases:
            continue
        reach = closure(t, graph)
        if reach is None:
            continue
        if not (reach & wanted_bases) and not any(f"{r}Collection" in wanted for r in reach):
            out.add(t)
    return frozenset(out)


def main() -> None:
    csdl = Path(sys.argv[1])
    out = Path(__file__).parent / "data" / "containment.json"
    out.write_text(json.dumps(derive(csdl), indent=0, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
