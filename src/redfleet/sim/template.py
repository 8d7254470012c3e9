"""A Redfish tree loaded once and shared by every simulated BMC of its flavor.

Each resource is kept as compact JSON bytes (the fast path serves them as they are, after the per-node identity
substitution) and parsed on demand; parsed documents are cached and must be treated as read-only (callers that
change a document work on :meth:`Template.copy_doc`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from redfleet.sim.identity import HOST_KEYS, is_identity_value

Doc = dict[str, Any]

# Parts of a tree that describe schemas or registries: served as captured, never given per-node identity.
_STATIC_PARTS = ("/JsonSchemas", "/Registries", "/SchemaStore", "/RegistryStore", "/schema", "/$metadata", "/odata")
_STATIC_PARTS_LOWER = tuple(p.lower() for p in _STATIC_PARTS)

JSON_TYPE = "application/json;charset=utf-8"
XML_TYPE = "application/xml;charset=utf-8"


class Res:
    """One resource of a template: its bytes, the identity values it contains, its captured ETag."""

    __slots__ = ("body", "ctype", "doc", "etag_fragment", "idents", "is_collection")

    def __init__(self, body: bytes, ctype: str) -> None:
        self.body = body
        self.ctype = ctype
        self.idents: tuple[str, ...] = ()
        self.etag_fragment: bytes | None = None  # b'"@odata.etag":"W/\\"AA\\""' as serialized
        self.doc: Doc | None = None
        self.is_collection = False


@dataclass(frozen=True)
class IdentKind:
    host: bool = False  # HostName/FQDN: replaced by the node name
    bmc: bool = False  # under /Managers: node-00001-bmc
    ip: bool = False  # the BMC's own IPv4 address (Managers/*/EthernetInterfaces): the node's BMC address


@dataclass
class Template:
    name: str
    root: Path
    case_insensitive: bool = False
    resources: dict[str, Res] = field(default_factory=dict)
    lower: dict[str, str] = field(default_factory=dict)
    idents: dict[str, IdentKind] = field(default_factory=dict)
    allow: dict[str, str] = field(default_factory=dict)  # Allow header per path, filled on first use

    # ---- lookup -------------------------------------------------------------------------------------------
    def find(self, path: str) -> str | None:
        """The canonical path of ``path`` in this tree (trailing slash ignored; case too where the flavor does)."""
        if path in self.resources:
            return path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
            if path in self.resources:
                return path
        if self.case_insensitive:
            return self.lower.get(path.lower())
        return None

    def get(self, path: str) -> Res | None:
        return self.resources.get(path)

    def doc(self, path: str) -> Doc | None:
        """The parsed document at a canonical path (shared: do not mutate)."""
        res = self.resources.get(path)
        if res is None or res.ctype != JSON_TYPE:
            return None
        if res.doc is None:
            try:
                res.doc = orjson.loads(res.body)
            except orjson.JSONDecodeError:
                return None
        return res.doc

    def copy_doc(self, path: str) -> Doc | None:
        """A private deep copy of the document at ``path``."""
        res = self.resources.get(path)
        if res is None or res.ctype != JSON_TYPE:
            return None
        try:
            value = orjson.loads(res.body)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def members(self, path: str) -> list[str]:
        doc = self.doc(path) or {}
        out = []
        for m in doc.get("Members") or []:
            if isinstance(m, dict) and isinstance(m.get("@odata.id"), str):
                out.append(m["@odata.id"])
        return out

    def paths(self) -> list[str]:
        return list(self.resources)

    # ---- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path, name: str, case_insensitive: bool = False) -> Template:
        root = Path(root)
        base = root
        if (root / "redfish").is_dir():
            base = root
        elif root.name == "v1" and root.parent.name == "redfish":
            base = root.parent.parent
        elif root.name == "redfish":
            base = root.parent
        if not (base / "redfish" / "v1").is_dir():
            raise FileNotFoundError(f"{root}: not a tall Redfish tree (no redfish/v1/ folder inside)")
        tpl = cls(name=name, root=base, case_insensitive=case_insensitive)
        found: dict[str, tuple[str, IdentKind]] = {}
        base_str = str(base)
        cut = len(base_str)
        static_prefixes = tuple("/redfish/v1" + p for p in _STATIC_PARTS_LOWER)
        for dirpath, _dirs, files in os.walk(base_str):
            if dirpath == base_str:
                continue  # README and friends; served trees start one level down (redfish/, schemas/, ...)
            rel = dirpath[cut:].replace(os.sep, "/")
            if "?" in rel:
                continue  # captured later pages ("Sensors?$skip=75"): the first page already holds every member
            for fname in files:
                if fname == "index.json" or fname == "index.xml":
                    path = rel
                else:
                    path = f"{rel}/{fname}"
                is_xml = fname.endswith(".xml")
                if not is_xml and not fname.endswith(".json"):
                    continue
                with open(os.path.join(dirpath, fname), "rb") as fh:
                    raw = fh.read()
                if is_xml:
                    # references to the capture-time BMC address become service-relative
                    raw = _CAPTURE_HOST.sub(b'Uri="/', raw)
                    tpl.resources[path] = Res(raw, XML_TYPE)
                    continue
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    tpl.resources[path] = Res(raw, JSON_TYPE)
                    continue
                if (
                    isinstance(parsed, dict)
                    and isinstance(parsed.get("Members"), list)
                    and "Members@odata.nextLink" in parsed
                    and len(parsed["Members"]) >= int(parsed.get("Members@odata.count") or 0)
                ):
                    del parsed["Members@odata.nextLink"]  # Mockup Creator merged the pages into the first one
                res = Res(orjson.dumps(parsed), JSON_TYPE)
                if isinstance(parsed, dict):
                    res.is_collection = isinstance(parsed.get("Members"), list)
                    etag = parsed.get("@odata.etag")
                    if isinstance(etag, str):
                        res.etag_fragment = b'"@odata.etag":' + orjson.dumps(etag)
                    if not path.lower().startswith(static_prefixes):
                        _collect_identity(parsed, path, found)
                tpl.resources[path] = res
        if "/redfish" not in tpl.resources:
            tpl.resources["/redfish"] = Res(b'{"v1":"/redfish/v1/"}', JSON_TYPE)
        # An identity value that is part of a URI cannot change (links would break): keep it as captured.
        all_paths = "\n".join(tpl.resources).lower()
        tpl.idents = {v: kind for v, (_k, kind) in found.items() if v.lower() not in all_paths}
        ordered = sorted(tpl.idents, key=len, reverse=True)
        if ordered:
            finder = re.compile(b"|".join(re.escape(v.encode()) for v in ordered))
            rank = {v: i for i, v in enumerate(ordered)}
            for path, res in tpl.resources.items():
                if res.ctype != JSON_TYPE or path.lower().startswith(static_prefixes):
                    continue
                hits = {m.decode() for m in finder.findall(res.body)}
                if hits:
                    res.idents = tuple(sorted(hits, key=rank.__getitem__))
        if case_insensitive:
            tpl.lower = {}
            for path in tpl.resources:
                tpl.lower.setdefault(path.lower(), path)
        return tpl


_IP_KEYS = ("IPv4Addresses", "IPv4StaticAddresses")
_NOT_OWN_IP = ("0.", "127.", "169.254.")  # unset, loopback, host-interface link-local


def _collect_identity(obj: Any, path: str, found: dict[str, tuple[str, IdentKind]]) -> None:
    if isinstance(obj, dict):
        if path.startswith("/redfish/v1/Managers/") and "/EthernetInterfaces/" in path:
            for key in _IP_KEYS:
                for item in obj.get(key) or []:
                    addr = item.get("Address") if isinstance(item, dict) else None
                    if isinstance(addr, str) and addr.count(".") == 3 and not addr.startswith(_NOT_OWN_IP):
                        found.setdefault(addr, ("Address", IdentKind(ip=True)))
        for key, value in obj.items():
            if isinstance(value, str):
                if is_identity_value(key, value) and value not in found:
                    if key in HOST_KEYS:
                        kind = IdentKind(host=True, bmc=path.startswith("/redfish/v1/Managers"))
                    else:
                        kind = IdentKind()
                    found[value] = (key, kind)
            elif isinstance(value, (dict, list)):
                _collect_identity(value, path, found)
    elif isinstance(obj, list):
        for item in obj:
            _collect_identity(item, path, found)


_CAPTURE_HOST = re.compile(rb'Uri="https?://(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?/')

_CACHE: dict[tuple[str, bool], Template] = {}


def _code_hash() -> bytes:
    """The code that shapes a parsed template, as imported by this process (not as it is on disk now)."""
    h = hashlib.sha1()
    from redfleet.sim import identity

    for mod in (__file__, identity.__file__):
        try:
            h.update(Path(mod).read_bytes())
        except OSError:
            h.update(mod.encode())
    return h.digest()


_CODE_HASH = _code_hash()
_LOCK = threading.Lock()


def load_template(root: Path, name: str, case_insensitive: bool = False) -> Template:
    """Load (once per process) the tree at ``root``. The reference captures (under shared/redfish/mockups, which
    never change) are also kept parsed on disk beside the certificate cache, so the next start is fast."""
    key = (str(Path(root).resolve()), case_insensitive)
    with _LOCK:
        tpl = _CACHE.get(key)
        if tpl is None:
            disk = _disk_cache_path(Path(key[0]), case_insensitive)
            tpl = _read_disk_cache(disk) if disk is not None else None
            if tpl is None:
                tpl = Template.load(Path(root), name, case_insensitive)
                if disk is not None:
                    _write_disk_cache(disk, tpl)
            tpl.name = name
            _CACHE[key] = tpl
        return tpl


def _disk_cache_path(root: Path, case_insensitive: bool) -> Path | None:
    from redfleet.paths import mockups_dir
    from redfleet.sim.certs import default_cache_dir

    try:
        shared = mockups_dir().resolve()
        if shared not in root.parents:
            return None  # a user's tree may change: always read it
        code = hashlib.sha1(_CODE_HASH)
        code.update(f"{root}|{case_insensitive}|{root.stat().st_mtime_ns}".encode())
    except OSError:
        return None
    return default_cache_dir().parent / "sim-templates" / f"{root.name}-{code.hexdigest()[:16]}.pickle"


def _read_disk_cache(path: Path) -> Template | None:
    try:
        with open(path, "rb") as fh:
            tpl = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError):
        return None
    return tpl if isinstance(tpl, Template) else None


def _write_disk_cache(path: Path, tpl: Template) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(tpl, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass
