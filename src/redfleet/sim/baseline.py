"""A flavor's baseline: the captured box with its own faults repaired.

The reference captures are real servers on the day they were captured, faults included (the iLO 5 capture has a
drive whose Health is Critical). Copied onto every simulated node, such a fault would make a whole vendor's share
of a "fault-free" fleet unhealthy, and remediation rehearsals would chase it. So the built-in flavors start from
the capture with every enabled component's Health set back to OK; faults then come only from injection. Health of
functions that are disabled or absent is left as captured (it says nothing about hardware). ``--mockup DIR``
serves a tree verbatim, faults and all.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import orjson

from redfleet.sim.template import JSON_TYPE, Res, Template

_BAD = (b'"Health":"Critical"', b'"Health":"Warning"', b'"HealthRollup":"Critical"', b'"HealthRollup":"Warning"')
_LEAVE_STATES = frozenset({"Disabled", "Absent", "StandbyOffline", "UnavailableOffline"})
_CACHE: dict[int, Template] = {}
_LOCK = threading.Lock()


def _heal(obj: Any) -> bool:
    changed = False
    if isinstance(obj, dict):
        st = obj.get("Status")
        if isinstance(st, dict) and st.get("State") not in _LEAVE_STATES:
            for key in ("Health", "HealthRollup"):
                if st.get(key) in ("Warning", "Critical"):
                    st[key] = "OK"
                    changed = True
        for value in obj.values():
            changed = _heal(value) or changed
    elif isinstance(obj, list):
        for value in obj:
            changed = _heal(value) or changed
    return changed


def healthy_baseline(tpl: Template) -> Template:
    """``tpl`` with captured component faults repaired; resources without any are shared, not copied."""
    with _LOCK:
        cached = _CACHE.get(id(tpl))
        if cached is not None:
            return cached
        out = copy.copy(tpl)
        out.resources = dict(tpl.resources)
        out.allow = {}
        for path, res in tpl.resources.items():
            if res.ctype != JSON_TYPE or not any(b in res.body for b in _BAD):
                continue
            doc = orjson.loads(res.body)
            if not _heal(doc):
                continue
            healed = Res(orjson.dumps(doc), res.ctype)
            healed.idents, healed.etag_fragment, healed.is_collection = res.idents, res.etag_fragment, res.is_collection
            out.resources[path] = healed
        _CACHE[id(tpl)] = out
        return out
