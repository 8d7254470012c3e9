"""Judging a resource once per distinct content: the verdict memo of a fleet run.

Nodes of one platform serve the same resources with mostly the same content; what differs (ETags, serial numbers,
sensor readings) is seldom what a profile's requirements read. The memo keys a resource's judgement by its URI and a
*projection* of its payload: only what the requirements of its type can read (see :func:`projection_tree`), and of
each object a marker of how a row would render it. A resource whose projection was judged before on another node is
not judged again: the recorded results (rows, service-wide checks, use cases found) are replayed for this node,
provided every other resource the judgement looked at (a parent's type, a linked resource's type, an ActionInfo, an
``Allow`` header) reads the same on this node. Verdicts stay per node and identical to a full judgement;
``VerdictMemo(verify=True)`` judges every hit again and counts any difference (the tests use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from redfleet.profiles.profile import ProfileSet

# In a projection tree, a name mapped to FULL keeps its whole value; a name mapped to a tree keeps only what that
# tree names (applied to every element of an array); a name mapped to LEAF (a property whose requirements only ask
# that it be there) keeps a string or number as its type alone: its verdicts cannot depend on it, and a replayed
# row shows this node's own value (see ``Evaluation._replay``).
FULL: None = None
LEAF = "leaf"
Tree = dict[str, Any]

# Read at every level by the engine whatever the requirement: property conditions (also searched in enclosing
# objects, deviation D8), writable-property annotations, the resource's type.
_EVERYWHERE = ("@Redfish.WriteableProperties", "@odata.type")
# Read from the resource's top level: its version, its state (IfPopulated, AbsentResource use cases), its actions
# and members (collections: the first member's Allow header).
_TOP = ("@odata.type", "Status", "Actions", "Members", "Members@odata.count")
# Requirement keys whose check reads the property's whole value (not only its sub-properties).
_VALUE_KEYS = ("Values", "Comparison", "MinCount", "MinSupportValues")


def _merge(tree: Tree, name: str, sub: Tree | str | None) -> None:
    """FULL wins over a tree, a tree over LEAF (a tree keeps strings and numbers as they are)."""
    if name not in tree:
        tree[name] = {} if isinstance(sub, dict) else sub
    have = tree[name]
    if have is FULL:
        return
    if sub is FULL:
        tree[name] = FULL
        return
    if not isinstance(sub, dict):
        return  # LEAF adds nothing to a tree or to LEAF
    if not isinstance(have, dict):
        have = tree[name] = {}
    for k, v in sub.items():
        _merge(have, k, v)


def _pointer(root: Tree, name: str) -> None:
    """A JSON pointer ("/A/B") read from the top level: keep its first component whole."""
    first = name.lstrip("/").split("/", 1)[0]
    if first:
        _merge(root, first, FULL)


def projection_tree(profiles: ProfileSet, rtype: str) -> tuple[Tree, frozenset[str]]:
    """What the requirements on ``rtype`` can read: a tree of property names, and the names kept at every level."""
    root: Tree = {}
    everywhere: set[str] = set(_EVERYWHERE)
    for name in _TOP:
        _merge(root, name, FULL)

    def conditions(req: dict[str, Any]) -> None:
        for cond in req.get("ConditionalRequirements") or []:
            prop = cond.get("CompareProperty") if isinstance(cond, dict) else None
            if isinstance(prop, str):
                if prop.startswith("/"):
                    _pointer(root, prop)
                else:
                    everywhere.add(prop)

    def props(tree: Tree, reqs: dict[str, Any]) -> None:
        for prop, req in reqs.items():
            if not isinstance(req, dict):
                _merge(tree, prop, FULL)
                continue
            conds = [c for c in req.get("ConditionalRequirements") or [] if isinstance(c, dict)]
            whole = any(k in req for k in _VALUE_KEYS) or any(k in c for c in conds for k in _VALUE_KEYS)
            if whole:
                _merge(tree, prop, FULL)
            elif "PropertyRequirements" not in req:
                _merge(tree, prop, LEAF)
            else:
                sub: Tree = {}
                props(sub, req["PropertyRequirements"])
                _merge(tree, prop, sub)
            _merge(tree, prop + "@Redfish.AllowableValues", FULL)
            for key in ("ReplacedByProperty", "ReplacesProperty"):
                other = req.get(key)
                if isinstance(other, str):
                    if other.startswith("/"):
                        _pointer(root, other)
                    else:
                        everywhere.add(other)
            conditions(req)

    for uc in profiles.use_cases_for(rtype):
        req = uc.req
        key_prop = req.get("UseCaseKeyProperty")
        if isinstance(key_prop, str):
            _pointer(root, "/" + key_prop.lstrip("/"))
        conditions(req)
        if isinstance(req.get("PropertyRequirements"), dict):
            props(root, req["PropertyRequirements"])
    return root, frozenset(everywhere)


def project(obj: Any, tree: Tree, everywhere: frozenset[str]) -> Any:
    """``obj`` reduced to what ``tree`` names. An object that is a link alone (``{"@odata.id": ...}``) is kept
    whole, any other carries a marker: a result row shows the one as the link and the other as ``[Object]``."""
    if isinstance(obj, dict):
        if len(obj) == 1 and "@odata.id" in obj:
            return obj
        out: dict[str, Any] = {"\x00": 1}
        for k, v in obj.items():
            if k in everywhere:
                out[k] = v
            elif k in tree:
                sub = tree[k]
                if sub is FULL:
                    out[k] = v
                elif sub == LEAF:
                    out[k] = _LEAF_TAGS.get(type(v), v)
                else:
                    out[k] = project(v, sub, everywhere)
        return out
    if isinstance(obj, list):
        return [project(item, tree, everywhere) for item in obj]
    return obj


MemoKey = tuple[str, str, bytes]  # (platform, URI, projection)
_LEAF_TAGS: dict[type, str] = {str: "\x01str", int: "\x01int", float: "\x01float"}


@dataclass
class Recording:
    """One judgement: its rows, what else it added (replayed in order) and what it read besides the resource."""

    # ((URI, property), resource, verdict, found, present, messages, requirements, purposes, JSON pointer of the
    # value shown or None)
    rows: list[tuple[Any, ...]]
    ops: list[tuple[Any, ...]]  # (kind, use case, arguments): service-wide check values, use cases found
    deps: list[tuple[str, str, Any]]


@dataclass
class VerdictMemo:
    """Judgements of one fleet run, shared by its targets (one event loop: no locking needed)."""

    profiles: ProfileSet | None = field(default=None, repr=False)
    # Past this many distinct projections of one URI (its requirements read per-node values: serials, readings),
    # the URI is judged on every node without projecting it.
    per_uri_limit: int = 6
    verify: bool = False
    hits: int = 0
    misses: int = 0
    mismatches: list[str] = field(default_factory=list)
    _trees: dict[str, tuple[Tree, frozenset[str]]] = field(default_factory=dict, repr=False)
    _store: dict[MemoKey, Recording] = field(default_factory=dict, repr=False)
    _per_uri: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def key(self, profiles: ProfileSet, platform: str, rtype: str, uri: str,
            payload: dict[str, Any]) -> MemoKey | None:
        """The memo key of a resource of a platform (:meth:`FleetPlan.key`), or None when it is not worth keeping
        (too many variants, or not JSON)."""
        if self._per_uri.get((platform, uri), 0) >= self.per_uri_limit:
            return None
        if self.profiles is None:
            self.profiles = profiles
        elif self.profiles is not profiles:  # one memo serves one profile set
            return None
        shape = self._trees.get(rtype)
        if shape is None:
            shape = self._trees[rtype] = projection_tree(profiles, rtype)
        try:
            data = orjson.dumps(project(payload, shape[0], shape[1]))
        except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
            return None
        return platform, uri, data

    def get(self, key: MemoKey) -> Recording | None:
        return self._store.get(key)

    def put(self, key: MemoKey, recording: Recording) -> None:
        if key not in self._store:
            self._store[key] = recording
            where = (key[0], key[1])
            self._per_uri[where] = self._per_uri.get(where, 0) + 1
