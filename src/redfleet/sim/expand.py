"""``$expand`` from bytes compiled once per flavor, instead of parsing, walking and re-serializing documents.

``GET .../Sensors?$expand=.($levels=1)`` is what a poller sends most; an inventory expands collections one to
three levels deep. The generic code (:meth:`RedfishHandler._expand_into`) parses the resource, walks it, parses and
walks every resource it embeds and serializes the whole again. For a node that has changed nothing in that tree the
answer is the template's: :func:`compile_shell` runs the same walk once on the template and keeps the result as bytes
with a slot for each thing that differs from node to node (the ETag of each embedded document, the body of each
leaf, which a GET of it gives: live readings, identity), and :func:`render` fills the slots.

Used only where the result is the generic code's, byte for byte (tests/sim/test_core_fast_answers.py compares both
for every collection of every flavor): the node has removed and hidden nothing. A document embedded whole
that the node has patched or that the dynamic side overlays right now is rendered by the generic code into its slot;
leaves are rendered as a GET of them is. Everything else, errors included, goes the generic way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.node import SimNode
    from redfleet.sim.template import Template

Doc = dict[str, Any]

_EXPAND = re.compile(r"^([.*~])(?:\(\$levels=(\d+)\))?$")
_MARK = re.compile(rb'"\\u0000rfx(\d+)\\u0000"')
_ETAG, _LEAF, _INNER = 0, 1, 2


def _mark(n: int) -> str:
    return f"\x00rfx{n}\x00"


class Shell:
    """One document of an expanded tree as a bytes %-format with slots: ``(_ETAG, path, None)``, ``(_LEAF, path,
    None)`` and ``(_INNER, path, (its Shell, levels left, the bare link's bytes))`` for a document embedded whole."""

    __slots__ = ("fmt", "leaves", "seen", "sessions", "slots")

    def __init__(self, body: bytes, slots: list[tuple[int, str, Any]]) -> None:
        pieces: list[bytes] = []
        order: list[int] = []
        pos = 0
        for m in _MARK.finditer(body):
            pieces.append(body[pos:m.start()].replace(b"%", b"%%"))
            order.append(int(m.group(1)))
            pos = m.end()
        pieces.append(body[pos:].replace(b"%", b"%%"))
        self.fmt = b"%b".join(pieces)
        # the slots in the order they appear in the bytes
        self.slots = tuple(slots[i] for i in order)
        self.leaves = tuple(path for what, path, _x in self.slots if what == _LEAF)
        self.seen: frozenset[str] = frozenset()  # identity values of the documents embedded whole (root only)
        self.sessions = False  # the tree holds a URI under the session collection (root only)


class _Compiler:
    """The generic walk (server.RedfishHandler._expand_into and _sub) on the template, leaving slots."""

    def __init__(self, tpl: Template, mode: str, session_collection: str) -> None:
        self.tpl = tpl
        self.mode = mode
        self.sessions_low = session_collection.lower().rstrip("/")
        self.seen: set[str] = set()
        self.sessions = False
        self.refused = False

    def shell(self, path: str, levels: int) -> Shell | None:
        """The Shell of the document at ``path`` with ``levels`` still to expand: what SimNode.render_doc gives for
        an untouched, unwatched template document, walked."""
        doc = self.tpl.copy_doc(path)
        if doc is None:
            return None
        if path.lower().rstrip("/") == self.sessions_low:
            self.refused = True  # its members are the node's sessions, not the template's
        slots: list[tuple[int, str, Any]] = []
        if isinstance(doc.get("Members"), list):
            doc["Members@odata.count"] = len(doc["Members"])
        if "@odata.etag" in doc:
            slots.append((_ETAG, path, None))
            doc["@odata.etag"] = _mark(0)
        self.walk(doc, levels, False, slots)
        return Shell(orjson.dumps(doc), slots)

    def walk(self, obj: Any, levels: int, in_links: bool, slots: list[tuple[int, str, Any]]) -> None:
        if levels <= 0 or not isinstance(obj, dict):
            return
        mode = self.mode
        for key, value in list(obj.items()):
            if key.startswith("@") or key == "Actions" or key.endswith("@odata.nextLink"):
                continue
            links = in_links or key in ("Links", "RelatedItem")
            wanted = (mode == "*") or (mode == "." and not links) or (mode == "~" and links)
            if isinstance(value, dict):
                if len(value) == 1 and "@odata.id" in value and key != "Oem":
                    if wanted:
                        sub = self.sub(value, levels - 1, slots)
                        if sub is not None:
                            obj[key] = sub
                else:
                    self.walk(value, levels, links, slots)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        continue
                    if len(item) == 1 and "@odata.id" in item:
                        if wanted:
                            sub = self.sub(item, levels - 1, slots)
                            if sub is not None:
                                value[i] = sub
                    else:
                        self.walk(item, levels, links, slots)

    def sub(self, link: Doc, levels: int, slots: list[tuple[int, str, Any]]) -> str | None:
        uri = str(link["@odata.id"])
        if "?" in uri or "#" in uri:
            uri = uri.split("?", 1)[0].split("#", 1)[0]
        canon = self.tpl.find(uri)
        if canon is None or "/JsonSchemas" in canon or "/Registries" in canon:
            return None
        if canon.lower().startswith(self.sessions_low):
            self.sessions = True  # a node's session could sit at this URI: only for a node without sessions
        res = self.tpl.resources[canon]
        if levels <= 0:
            if res.ctype != JSON_TYPE:
                return None
            slots.append((_LEAF, canon, None))
            return _mark(len(slots) - 1)
        inner = self.shell(canon, levels)
        if inner is None:
            return None
        self.seen.update(res.idents)
        slots.append((_INNER, canon, (inner, levels, orjson.dumps(link))))
        return _mark(len(slots) - 1)


def parse(node: SimNode, expand: str) -> tuple[str, int] | None:
    """(mode, levels) of a valid ``$expand`` this node supports; None for anything the generic code must answer."""
    facts = node.facts
    if facts.expand_max_levels == 0:
        return None
    m = _EXPAND.match(expand.strip())
    if m is None or m.group(1) not in facts.expand_modes:
        return None
    levels = int(m.group(2)) if m.group(2) else 1
    if levels < 1 or levels > facts.expand_max_levels:
        return None
    return m.group(1), levels


def compile_shell(tpl: Template, canon: str, mode: str, levels: int, session_collection: str) -> Shell | None:
    comp = _Compiler(tpl, mode, session_collection)
    shell = comp.shell(canon, levels)
    if shell is None or comp.refused:
        return None
    shell.seen = frozenset(comp.seen)
    shell.sessions = comp.sessions
    return shell


def can_use(node: SimNode, canon: str, shell: Shell) -> bool:
    """True when nothing on this node makes the tree differ from the template's, but what render() handles."""
    # (what a node creates, log entries, tasks, jobs, sessions, sits at new URIs: never one of the template's;
    # a collection it adds them to counts as changed, below)
    if node.removed or (shell.sessions and node.sessions) or node.dyn.hides_any:
        return False
    return not _changed(node, canon)


def _changed(node: SimNode, path: str) -> bool:
    """The node's version of this document is not the template's as it is (patched, members added, overlaid)."""
    return path in node.patches or path in node.added or node.dyn.watches(path)


Generic = Callable[[str, int], "bytes | None"]


def render(node: SimNode, shell: Shell, generic: Generic) -> bytes | None:
    """The expanded document, before identity; None when a leaf is not a JSON body (the generic code decides).
    ``generic(path, levels)`` renders a document the node has changed, with what it embeds, as the generic code
    does (None: the link stays)."""
    got = _leaves(node, shell) if shell.leaves else []
    if got is None:
        return None
    it = iter(got)
    values: list[bytes] = []
    for what, path, extra in shell.slots:
        if what == _ETAG:
            values.append(node.etag_json(path))
        elif what == _LEAF:
            values.append(next(it))
        else:
            inner, levels, link = extra
            if _changed(node, path):
                body = generic(path, levels)
                values.append(link if body is None else body)
            else:
                body = render(node, inner, generic)
                if body is None:
                    return None
                values.append(body)
    return shell.fmt % tuple(values)


def _leaves(node: SimNode, shell: Shell) -> list[bytes] | None:
    paths = shell.leaves
    if not paths:
        return []
    patches = node.patches
    if not (patches and any(p in patches for p in paths)):
        bodies = node.dyn.live_many(paths)  # the dynamic side renders a healthy node's live leaves in one call
        if bodies is not None:
            tpl = node.template
            for i, path in enumerate(paths):
                idents = tpl.resources[path].idents
                if idents:
                    bodies[i] = node.apply_identity(bodies[i], idents)
            return bodies
    out: list[bytes] = []
    for path in paths:
        got = node.render_bytes(path)
        if got is None or got[1] != JSON_TYPE:
            return None
        out.append(got[0])
    return out
