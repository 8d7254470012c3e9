"""What changed between two inventories of a node, as rows a person can read.

Inventories are the JSON form of the normalized model (top-level ``bmc``, ``systems``, ``cpus``, ``gpus``,
``memory``, ``drives``, ``nics``, ``psus``, ``fans``, ``firmware``; unknown keys are handled the same way). Each
list item is matched with its counterpart by identity: for hardware the physical location, else its id, else its
serial (the first of these that is present and unique on both sides); firmware by name, else id. Items that match
nothing are *added*/*removed*, except that a lone removed and a lone added item with the same name or model are
taken as one component that changed (Dell firmware ids carry the version). A matched item whose serial differs was
*replaced*; any other differing field is *changed*. Volatile readings (health, power state, sensor values, the
URI an item was read from) are not inventory and are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Fields that describe the moment, not the hardware: never a change, never part of the digest.
VOLATILE_FIELDS = frozenset(
    {
        # status of the moment
        "health", "health_rollup", "state", "status", "power_state", "link_status", "speed_rpm",
        "temperature_celsius", "power_watts", "input_watts", "output_watts", "last_power_output_watts",
        "life_left_percent", "predicted_media_life_left_percent", "uptime_seconds",
        # how and when it was read, not what it is
        "uri", "uris", "source", "sources", "found_via", "odata_id", "@odata.id", "@odata.etag", "collected_at",
        "duration_s", "requests", "warnings", "auth", "quirks", "capabilities", "schema_version",
    }
)
VOLATILE_PREFIXES = ("reading",)

# Identity candidates per category, best first; a tuple is a composite identity (shown joined by "/").
Identity = str | tuple[str, ...]
IDENTITY_FIELDS: dict[str, tuple[Identity, ...]] = {
    "systems": ("id", "serial", "uuid"),
    "firmware": ("name", "id", ("name", "id")),
    # adapters and OS interfaces share ids on some BMCs (Supermicro): kind/id tells them apart
    "nics": ("location", "id", ("kind", "id"), "mac", "serial"),
}
DEFAULT_IDENTITY: tuple[Identity, ...] = ("location", "id", "serial", "name", ("system", "id"))
# A lone removed + lone added item sharing one of these is one component that changed.
PAIRING_FIELDS = ("name", "model", "id")

LABELS = {
    "systems": "system", "cpus": "CPU", "gpus": "GPU", "memory": "DIMM", "drives": "drive", "nics": "NIC",
    "psus": "PSU", "fans": "fan", "firmware": "firmware", "bmc": "BMC",
}


@dataclass(frozen=True)
class ComponentChange:
    category: str
    component: str
    kind: str  # added / removed / replaced / changed
    summary: str
    field: str | None = None
    old: str | None = None
    new: str | None = None


def _volatile(key: str) -> bool:
    return key in VOLATILE_FIELDS or key.startswith(VOLATILE_PREFIXES)


def significant(value: Any) -> Any:
    """The inventory without volatile fields (recursively). Hot path: plain dict/list checked by type first."""
    kind = type(value)
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        out = {}
        for k, v in value.items():
            key = k if type(k) is str else str(k)
            if key in VOLATILE_FIELDS or key.startswith(VOLATILE_PREFIXES):
                continue
            out[k] = significant(v) if type(v) in (dict, list) or isinstance(v, Mapping) else v
        return out
    if kind is list:
        return [significant(v) if type(v) in (dict, list) else v for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(inventory: Mapping[str, Any]) -> str:
    """SHA-256 of the significant part of an inventory: equal digests mean the same hardware and firmware."""
    return hashlib.sha256(canonical_json(significant(inventory)).encode()).hexdigest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list):
        return canonical_json(value)
    return str(value)


def _flatten(item: Mapping[str, Any], prefix: str = "") -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in item.items():
        if _volatile(str(key)):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = _text(significant(value))
        else:
            out[name] = _text(value)
    return out


def _identity_value(item: Mapping[str, Any], identity: Identity) -> str | None:
    if isinstance(identity, str):
        return _text(item.get(identity))
    parts = [_text(item.get(f)) for f in identity]
    return None if any(p in (None, "") for p in parts) else "/".join(p for p in parts if p)


def _identity_field(category: str, old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> Identity | None:
    for identity in IDENTITY_FIELDS.get(category, DEFAULT_IDENTITY):
        ok = True
        for items in (old, new):
            values = [_identity_value(i, identity) for i in items]
            if any(v in (None, "") for v in values) or len(set(values)) != len(values):
                ok = False
                break
        if ok:
            return identity
    return None


def _keyed(items: list[Mapping[str, Any]], identity: Identity | None) -> dict[str, Mapping[str, Any]]:
    if identity is not None:
        return {str(_identity_value(i, identity)): i for i in items}
    # No usable identity: fall back to a description of the item, numbered on collisions.
    out: dict[str, Mapping[str, Any]] = {}
    for item in items:
        base = _describe(item) or "item"
        key, n = base, 1
        while key in out:
            n += 1
            key = f"{base} #{n}"
        out[key] = item
    return out


def _describe(item: Mapping[str, Any]) -> str:
    parts = []
    for field in ("manufacturer", "model", "name"):
        value = item.get(field)
        if value and str(value) not in parts:
            parts.append(str(value))
    for field, label in (("version", "version"), ("capacity_gib", "GiB"), ("capacity_mib", "MiB"),
                         ("capacity_bytes", "bytes"), ("serial", "serial")):
        value = item.get(field)
        if value not in (None, ""):
            parts.append(f"{value} {label}" if label in ("GiB", "MiB", "bytes") else f"{label} {value}")
    return " ".join(parts)


def _item_changes(
    category: str, component: str, old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] | None = None
) -> list[ComponentChange]:
    label = LABELS.get(category, category)
    a, b = _flatten(old), _flatten(new)
    for name in ignore or ():  # the identity that paired them (an id embedding a version is no change of its own)
        a.pop(name, None)
        b.pop(name, None)
    who = label if component == label else f"{label} {component}"
    changes: list[ComponentChange] = []
    serial_old, serial_new = a.get("serial"), b.get("serial")
    if serial_old and serial_new and serial_old != serial_new:
        what = _describe({k: v for k, v in new.items() if k != "serial"})
        changes.append(ComponentChange(
            category, component, "replaced",
            f"{who} replaced: serial {serial_old} → {serial_new}" + (f" ({what})" if what else ""),
            "serial", serial_old, serial_new,
        ))
    for field in sorted(set(a) | set(b)):
        if field == "serial" and changes:
            continue
        if a.get(field) != b.get(field):
            changes.append(ComponentChange(
                category, component, "changed",
                f"{who}: {field} {a.get(field) or '(none)'} → {b.get(field) or '(none)'}",
                field, a.get(field), b.get(field),
            ))
    return changes


def _as_items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list):
        return [v if isinstance(v, Mapping) else {"value": v} for v in value]
    return []


def diff_inventories(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ComponentChange]:
    """Differences from ``old`` to ``new``, grouped by category (in the model's order), then by component."""
    changes: list[ComponentChange] = []
    order = ["bmc", "systems", "cpus", "gpus", "memory", "drives", "nics", "psus", "fans", "firmware"]
    categories = order + sorted((set(old) | set(new)) - set(order))
    for category in categories:
        a, b = old.get(category), new.get(category)
        if a is None and b is None:
            continue
        if isinstance(a, Mapping) or isinstance(b, Mapping):
            changes.extend(_item_changes(category, LABELS.get(category, category),
                                         a if isinstance(a, Mapping) else {}, b if isinstance(b, Mapping) else {}))
            continue
        if not isinstance(a, list | type(None)) or not isinstance(b, list | type(None)):
            if _text(significant(a)) != _text(significant(b)) and not _volatile(category):
                changes.append(ComponentChange(category, category, "changed",
                                               f"{category}: {_text(a)} → {_text(b)}", category, _text(a), _text(b)))
            continue
        changes.extend(_diff_list(category, _as_items(a), _as_items(b)))
    return changes


def _diff_list(category: str, old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> list[ComponentChange]:
    label = LABELS.get(category, category)
    field = _identity_field(category, old, new)
    a, b = _keyed(old, field), _keyed(new, field)
    out: list[ComponentChange] = []
    for key in a.keys() & b.keys():
        out.extend(_item_changes(category, key, a[key], b[key]))
    removed = {k: a[k] for k in a.keys() - b.keys()}
    added = {k: b[k] for k in b.keys() - a.keys()}
    # Pair a lone removed item with a lone added item that shares a name/model (an id that embeds a version).
    for pair_field in PAIRING_FIELDS:
        for value in _lone_values(removed.values(), pair_field) & _lone_values(added.values(), pair_field):
            rk = next(k for k, v in removed.items() if _text(v.get(pair_field)) == value)
            ak = next(k for k, v in added.items() if _text(v.get(pair_field)) == value)
            component = rk if rk == ak else value
            ignore = (field,) if isinstance(field, str) else field
            out.extend(_item_changes(category, component, removed.pop(rk), added.pop(ak), ignore=ignore))
    for key in sorted(removed):
        what = _describe(removed[key])
        out.append(ComponentChange(category, key, "removed",
                                   f"{label} {key} removed" + (f" (was {what})" if what else ""),
                                   None, _text(removed[key].get("serial")), None))
    for key in sorted(added):
        what = _describe(added[key])
        out.append(ComponentChange(category, key, "added", f"{label} {key} added" + (f": {what}" if what else ""),
                                   None, None, _text(added[key].get("serial"))))
    return sorted(out, key=lambda c: (c.component, c.kind != "replaced", c.field or ""))


def _lone_values(items: Iterable[Mapping[str, Any]], field: str) -> set[str]:
    counts: dict[str, int] = {}
    for item in items:
        value = _text(item.get(field))
        if value:
            counts[value] = counts.get(value, 0) + 1
    return {v for v, n in counts.items() if n == 1}
