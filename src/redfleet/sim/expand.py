"""``$expand`` of a collection whose members are all leaves, without parsing and re-serializing the collection.

``GET .../Sensors?$expand=.($levels=1)`` is what a poller sends most. The generic code
(:meth:`RedfishHandler._expand_into`) parses the collection, walks it, renders each member as a GET of it answers
and serializes the whole again. When the collection document holds no link but its ``Members``, the answer is the
collection's captured bytes with the members' bodies put in place of the member list: :class:`Shell` keeps those
bytes cut at that point (once per flavor and collection), and :func:`render` joins them with the members' bytes.

It is used only where the result is the generic code's, byte for byte: no query option but ``$expand`` with one
level, a collection the node has not changed (no patch, no added or hidden member, no resource it created, not one
the dynamic side overlays) and a template collection whose members all resolve. Everything else goes the generic
way. tests/sim/test_core_fast_answers.py compares both.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.node import SimNode
    from redfleet.sim.template import Template

_MEMBERS = "\x00rf-members\x00"
_ETAG = "\x00rf-etag\x00"
_EXPAND = re.compile(r"^([.*~])(?:\(\$levels=(\d+)\))?$")


class Shell:
    """A collection's bytes cut around its member list (and its ``@odata.etag``, if it has one)."""

    __slots__ = ("etag_first", "idents", "members", "parts")

    def __init__(self, parts: tuple[bytes, ...], members: tuple[str, ...], etag_first: bool | None,
                 idents: tuple[tuple[int, tuple[str, ...]], ...]) -> None:
        self.parts = parts  # 2 pieces, or 3 with an ETag slot
        self.members = members  # canonical paths, in order
        self.etag_first = etag_first  # None: no ETag; True: the ETag comes before the members
        self.idents = idents  # (member number, its template's identity values) for members that have some


def _has_link(obj: Any) -> bool:
    """True when some object in ``obj`` is a bare link (``{"@odata.id": ...}``), i.e. something $expand may
    replace."""
    if isinstance(obj, dict):
        if set(obj) == {"@odata.id"}:
            return True
        return any(_has_link(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_link(v) for v in obj)
    return False


def compile_shell(tpl: Template, canon: str) -> Shell | None:
    doc = tpl.copy_doc(canon)
    if doc is None or not isinstance(doc.get("Members"), list):
        return None
    members: list[str] = []
    for m in doc["Members"]:
        if not isinstance(m, dict) or set(m) != {"@odata.id"} or not isinstance(m["@odata.id"], str):
            return None
        uri = m["@odata.id"].split("?", 1)[0].split("#", 1)[0]
        target = tpl.find(uri)
        if target is None or "/JsonSchemas" in target or "/Registries" in target:
            return None
        if tpl.resources[target].ctype != JSON_TYPE:
            return None
        members.append(target)
    if _has_link({k: v for k, v in doc.items() if k != "Members"}):
        return None
    # as SimNode._render_members and RedfishHandler._page leave it
    count = len(doc["Members"])
    doc["Members"] = _MEMBERS
    doc["Members@odata.count"] = count
    etag_first: bool | None = None
    if "@odata.etag" in doc:
        doc["@odata.etag"] = _ETAG
    body = orjson.dumps(doc)
    m_mark, e_mark = orjson.dumps(_MEMBERS), orjson.dumps(_ETAG)
    at_m = body.index(m_mark)
    parts: tuple[bytes, ...]
    if "@odata.etag" in doc:
        at_e = body.index(e_mark)
        etag_first = at_e < at_m
        first, second = sorted(((at_m, m_mark), (at_e, e_mark)))
        parts = (body[: first[0]], body[first[0] + len(first[1]): second[0]], body[second[0] + len(second[1]):])
    else:
        parts = (body[:at_m], body[at_m + len(m_mark):])
    idents = tuple((i, tpl.resources[p].idents) for i, p in enumerate(members) if tpl.resources[p].idents)
    return Shell(parts, tuple(members), etag_first, idents)


def one_level(node: SimNode, expand: str) -> bool:
    """True when ``expand`` is a valid, supported ``$expand`` of one level that expands ``Members``."""
    facts = node.facts
    if facts.expand_max_levels == 0:
        return False
    m = _EXPAND.match(expand.strip())
    if m is None or m.group(1) not in facts.expand_modes or m.group(1) == "~":
        return False
    return m.group(2) is None or m.group(2) == "1"


def can_use(node: SimNode, canon: str) -> bool:
    """True when nothing on this node makes its version of the collection differ from the template's."""
    return not (
        node.created or node.removed or canon in node.patches or canon in node.added
        or node.dyn.hides_any or node.dyn.watches(canon) or canon == node.facts.session_collection
    )


def _live_members(node: SimNode, shell: Shell) -> list[bytes] | None:
    """The members' bodies from the dynamic side in one call (what render_bytes gives for each, as none of them is
    patched), or None."""
    patches = node.patches
    if patches and any(p in patches for p in shell.members):
        return None
    bodies = node.dyn.live_many(shell.members)
    if bodies is None:
        return None
    for i, idents in shell.idents:
        bodies[i] = node.apply_identity(bodies[i], idents)
    return bodies


def render(node: SimNode, shell: Shell, canon: str) -> bytes | None:
    """The collection with its members expanded, before the collection's own identity; None if a member cannot be
    rendered as a JSON body (the generic code then decides)."""
    bodies = _live_members(node, shell)
    if bodies is None:
        bodies = []
        for path in shell.members:
            out = node.render_bytes(path)
            if out is None or out[1] != JSON_TYPE:
                return None
            bodies.append(out[0])
    members = b"[" + b",".join(bodies) + b"]"
    parts = shell.parts
    if shell.etag_first is None:
        return parts[0] + members + parts[1]
    etag = orjson.dumps(node.etag(canon))
    if shell.etag_first:
        return parts[0] + etag + parts[1] + members + parts[2]
    return parts[0] + members + parts[1] + etag + parts[2]
