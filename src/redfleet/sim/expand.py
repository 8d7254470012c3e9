"""``$expand`` from bytes compiled once per flavor, instead of parsing, walking and re-serializing documents.

``GET .../Sensors?$expand=.($levels=1)`` is what a poller sends most; an inventory expands collections one to
three levels deep. The generic code (:meth:`RedfishHandler._expand_into`) parses the resource, walks it, parses and
walks every resource it embeds and serializes the whole again. For a node that has changed nothing in that tree the
answer is the template's: :func:`compile_shell` runs the same walk once on the template and keeps the result as bytes
with a slot for each thing that differs from node to node (the ETag of each embedded document, the body of each
leaf, which a GET of it gives: live readings, identity), and :func:`render` fills the slots.

Used only where the result is the generic code's, byte for byte (tests/sim/test_core_fast_answers.py compares both
for every collection of every flavor): the node has created, removed and hidden nothing, and patched or overlays
none of the documents embedded whole (leaves may be live: they are rendered as a GET of them is). Everything else,
errors included, goes the generic way.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.node import SimNode
    from redfleet.sim.template import Template

Doc = dict[str, Any]

_EXPAND = re.compile(r"^([.*~])(?:\(\$levels=(\d+)\))?$")
_MARK = re.compile(rb'"\\u0000rfx(\d+)\\u0000"')
_ETAG, _LEAF = 0, 1


def _mark(n: int) -> str:
    return f"\x00rfx{n}\x00"


class Shell:
    """An expanded resource as a bytes %-format with slots: ``(_ETAG, path)`` and ``(_LEAF, path)``."""

    __slots__ = ("fmt", "inner", "leaves", "pick", "seen", "sessions", "slots")

    def __init__(self, body: bytes, slots: list[tuple[int, str]], inner: tuple[str, ...], seen: frozenset[str],
                 sessions: bool) -> None:
        pieces: list[bytes] = []
        order: list[int] = []
        pos = 0
        for m in _MARK.finditer(body):
            pieces.append(body[pos:m.start()].replace(b"%", b"%%"))
            order.append(int(m.group(1)))
            pos = m.end()
        pieces.append(body[pos:].replace(b"%", b"%%"))
        self.fmt = b"%b".join(pieces)
        self.pick: Any = itemgetter(*order) if len(order) > 1 else (
            (lambda values: (values[order[0]],)) if order else (lambda values: ()))
        self.slots = tuple(slots)
        self.leaves = tuple(path for what, path in slots if what == _LEAF)
        self.inner = inner  # the documents embedded whole (the resource itself first)
        self.seen = seen  # identity values of those (the generic code's ``seen``)
        self.sessions = sessions  # the tree holds a URI under the session collection


class _Compiler:
    """The generic walk (server.RedfishHandler._expand_into and _sub) on the template, leaving slots."""

    def __init__(self, tpl: Template, mode: str, session_collection: str) -> None:
        self.tpl = tpl
        self.mode = mode
        self.sessions_low = session_collection.lower().rstrip("/")
        self.slots: list[tuple[int, str]] = []
        self.inner: list[str] = []
        self.seen: set[str] = set()
        self.sessions = False
        self.refused = False

    def slot(self, what: int, path: str) -> str:
        self.slots.append((what, path))
        return _mark(len(self.slots) - 1)

    def document(self, path: str) -> Doc | None:
        """What SimNode.render_doc gives for an untouched, unwatched template document."""
        doc = self.tpl.copy_doc(path)
        if doc is None:
            return None
        if path.lower().rstrip("/") == self.sessions_low:
            self.refused = True  # its members are the node's sessions, not the template's
        if isinstance(doc.get("Members"), list):
            doc["Members@odata.count"] = len(doc["Members"])
        if "@odata.etag" in doc:
            doc["@odata.etag"] = self.slot(_ETAG, path)
        self.inner.append(path)
        return doc

    def walk(self, obj: Any, levels: int, in_links: bool) -> None:
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
                        sub = self.sub(str(value["@odata.id"]), levels - 1)
                        if sub is not None:
                            obj[key] = sub
                else:
                    self.walk(value, levels, links)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        continue
                    if len(item) == 1 and "@odata.id" in item:
                        if wanted:
                            sub = self.sub(str(item["@odata.id"]), levels - 1)
                            if sub is not None:
                                value[i] = sub
                    else:
                        self.walk(item, levels, links)

    def sub(self, uri: str, levels: int) -> Any:
        if "?" in uri or "#" in uri:
            uri = uri.split("?", 1)[0].split("#", 1)[0]
        canon = self.tpl.find(uri)
        if canon is None or "/JsonSchemas" in canon or "/Registries" in canon:
            return None
        if canon.lower().startswith(self.sessions_low):
            self.sessions = True  # a node's session could sit at this URI: only for a node without sessions
        res = self.tpl.resources[canon]
        if levels <= 0:
            return self.slot(_LEAF, canon) if res.ctype == JSON_TYPE else None
        doc = self.document(canon)
        if doc is None:
            return None
        self.seen.update(res.idents)
        self.walk(doc, levels, False)
        return doc


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
    doc = comp.document(canon)
    if doc is None:
        return None
    comp.walk(doc, levels, False)
    if comp.refused:
        return None
    return Shell(orjson.dumps(doc), comp.slots, tuple(comp.inner), frozenset(comp.seen), comp.sessions)


def can_use(node: SimNode, shell: Shell) -> bool:
    """True when nothing on this node makes its answer differ from the template's (leaves aside)."""
    if node.created or node.removed or (shell.sessions and node.sessions):
        return False
    dyn = node.dyn
    if dyn.hides_any:
        return False
    inner = shell.inner
    patches, added = node.patches, node.added
    if patches and any(p in patches for p in inner):
        return False
    if added and any(p in added for p in inner):
        return False
    return not any(map(dyn.watches, inner))


def render(node: SimNode, shell: Shell) -> bytes | None:
    """The expanded resource, before its identity; None if a leaf is not a JSON body (the generic code decides)."""
    leaves = _leaves(node, shell)
    if leaves is None:
        return None
    values: list[bytes] = []
    it = iter(leaves)
    for what, path in shell.slots:
        values.append(node.etag_json(path) if what == _ETAG else next(it))
    return shell.fmt % shell.pick(values)


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
