"""What a Redfish service says it can do, read from the service root before anything vendor-specific happens.

Vendor quirks are chosen *after* this, from what the service advertises (``Oem`` keys, ``Vendor``, ``Product``),
and standard behaviour (``$expand`` levels, ``$select``, sessions, which collections exist) comes from here alone,
so hardware redfleet has never seen works from standard Redfish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redfleet.redfish import uri as U


@dataclass
class Capabilities:
    redfish_version: str | None = None
    uuid: str | None = None
    vendor: str | None = None  # "Dell", "HPE", "Supermicro", "AMI", "OpenBMC", "NVIDIA", ... or None
    product: str | None = None
    oem_keys: list[str] = field(default_factory=list)
    # ProtocolFeaturesSupported
    expand_levels: bool = False  # $expand=.($levels=n) supported
    expand_all: bool = False
    expand_max_levels: int = 0
    expand_no_links: bool = False
    select: bool = False
    filter: bool = False
    only_member: bool = False
    excerpt: bool = False
    # service links from the root: name -> URI (Systems, Chassis, Managers, SessionService, UpdateService, ...)
    services: dict[str, str] = field(default_factory=dict)
    sessions_uri: str | None = None  # Links.Sessions

    def has(self, service: str) -> bool:
        return service in self.services

    def expand_query(self, levels: int = 1) -> str | None:
        """The ``$expand`` query string to use for a collection, or None when the service cannot expand."""
        if not (self.expand_levels or self.expand_all) or levels < 1:
            return None
        if self.expand_max_levels:
            levels = min(levels, self.expand_max_levels)
        if self.expand_no_links and self.expand_levels:
            return f"$expand=.($levels={levels})"
        if self.expand_all and self.expand_levels:
            return f"$expand=*($levels={levels})"
        if self.expand_no_links:
            return "$expand=."
        return "$expand=*"

    def to_dict(self) -> dict[str, Any]:
        return {
            "redfish_version": self.redfish_version,
            "vendor": self.vendor,
            "product": self.product,
            "expand": self.expand_query() is not None,
            "expand_max_levels": self.expand_max_levels,
            "select": self.select,
            "filter": self.filter,
            "services": sorted(self.services),
        }


# Oem key in the service root -> vendor. Only used to pick quirk modules; never to decide standard behaviour.
_OEM_VENDOR = {
    "dell": "Dell",
    "hpe": "HPE",
    "hp": "HPE",
    "supermicro": "Supermicro",
    "lenovo": "Lenovo",
    "ami": "AMI",
    "nvidia": "NVIDIA",
    "openbmc": "OpenBMC",
    "cisco": "Cisco",
    "fujitsu": "Fujitsu",
    "inspur": "Inspur",
    "huawei": "Huawei",
}


def detect(root: dict[str, Any]) -> Capabilities:
    caps = Capabilities()
    caps.redfish_version = root.get("RedfishVersion")
    caps.uuid = root.get("UUID")
    caps.product = root.get("Product")
    oem = root.get("Oem")
    caps.oem_keys = sorted(oem.keys()) if isinstance(oem, dict) else []
    vendor = root.get("Vendor")
    if isinstance(vendor, str) and vendor:
        caps.vendor = _OEM_VENDOR.get(vendor.lower(), vendor)
    else:
        for k in caps.oem_keys:
            if k.lower() in _OEM_VENDOR:
                caps.vendor = _OEM_VENDOR[k.lower()]
                break
        if caps.vendor is None and caps.product:
            p = caps.product.lower()
            if "dell" in p or "idrac" in p:
                caps.vendor = "Dell"
            elif "ami" in p:
                caps.vendor = "AMI"
    pfs = root.get("ProtocolFeaturesSupported")
    if isinstance(pfs, dict):
        exp = pfs.get("ExpandQuery")
        if isinstance(exp, dict):
            caps.expand_levels = bool(exp.get("Levels"))
            caps.expand_all = bool(exp.get("ExpandAll"))
            caps.expand_no_links = bool(exp.get("NoLinks"))
            try:
                caps.expand_max_levels = int(exp.get("MaxLevels") or 0)
            except (TypeError, ValueError):
                caps.expand_max_levels = 0
            if not caps.expand_max_levels and caps.expand_levels:
                caps.expand_max_levels = 1
        caps.select = bool(pfs.get("SelectQuery"))
        caps.filter = bool(pfs.get("FilterQuery"))
        caps.only_member = bool(pfs.get("OnlyMemberQuery"))
        caps.excerpt = bool(pfs.get("ExcerptQuery"))
    for name, value in root.items():
        target = U.odata_id(value)
        if target and not name.startswith("@"):
            caps.services[name] = target
    caps.sessions_uri = U.link(root, "Links", "Sessions")
    return caps
