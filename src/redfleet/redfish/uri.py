"""Link normalization.

BMCs spell the same resource differently: HPE iLO writes lower-case and trailing-slash links
(``/redfish/v1/systems/1/``), many services put ``#`` fragments into ``@odata.id`` (``.../Power#/PowerSupplies/0``),
some return absolute URLs. :func:`normalize` gives the path to request; :func:`key` the identity to deduplicate on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

ROOT = "/redfish/v1"


def normalize(uri: str) -> str:
    """Request path for a link: absolute URL reduced to its path (+query), fragment dropped, ``//`` collapsed,
    trailing slash dropped (except the root ``/``). Case is kept: the BMC decides whether it matters."""
    if not uri:
        return uri
    # fast path: already a clean absolute path (the common case: most links are)
    if uri[0] == "/" and uri[-1] != "/" and "#" not in uri and "//" not in uri:
        return uri
    if "://" in uri:
        parts = urlsplit(uri)
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
    elif "#" in uri:
        uri = uri.split("#", 1)[0]
    query = ""
    if "?" in uri:
        uri, query = uri.split("?", 1)
        query = "?" + query
    while "//" in uri:
        uri = uri.replace("//", "/")
    if len(uri) > 1 and uri.endswith("/"):
        uri = uri.rstrip("/") or "/"
    if not uri.startswith("/"):
        uri = "/" + uri
    return uri + query


def key(uri: str) -> str:
    """Identity of a resource for de-duplication: normalized, without query, case-folded."""
    path = normalize(uri).split("?", 1)[0]
    return path.casefold()


def fragment(uri: str) -> str | None:
    """The JSON-pointer fragment of a link (``/PowerSupplies/0``), if any."""
    if "#" in uri:
        return uri.split("#", 1)[1] or None
    return None


def odata_id(obj: Any) -> str | None:
    """The ``@odata.id`` of a link object or resource (normalized), else None."""
    if isinstance(obj, dict):
        value = obj.get("@odata.id")
        if isinstance(value, str) and value:
            return normalize(value)
    return None


def link(resource: dict[str, Any] | None, *path: str) -> str | None:
    """Follow nested keys to a link object and return its normalized ``@odata.id``.

    ``link(system, "Links", "Chassis")`` also accepts a list there and takes the first member."""
    cur: Any = resource
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    if isinstance(cur, list):
        cur = cur[0] if cur else None
    return odata_id(cur)


def links(resource: dict[str, Any] | None, *path: str) -> list[str]:
    """Like :func:`link` but returns every link of a list (or the one link of an object)."""
    cur: Any = resource
    for p in path:
        if not isinstance(cur, dict):
            return []
        cur = cur.get(p)
    items = cur if isinstance(cur, list) else [cur]
    out = []
    for it in items:
        u = odata_id(it)
        if u:
            out.append(u)
    return out


def join(base: str, *parts: str) -> str:
    return normalize("/".join([base.rstrip("/"), *(p.strip("/") for p in parts)]))
