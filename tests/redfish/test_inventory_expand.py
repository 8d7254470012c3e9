"""Inventory walk: where the service expands navigation properties several levels deep, a resource comes with its
collections and their members (PowerSubsystem + PowerSupplies, ThermalSubsystem + Fans, NetworkAdapters + Ports,
UpdateService + FirmwareInventory) in one answer; where it refuses, the walk reads them one by one, same result."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from rf_helpers import MOCKUPS, next_address, serve_tree

from redfleet.paths import mockups_dir
from redfleet.redfish import RedfishClient, collect_inventory
from redfleet.redfish.testing import MockupBMC

TREE = "nvidia_viking"  # advertises $expand up to 5 levels
pytestmark = pytest.mark.skipif(TREE not in MOCKUPS, reason="no DGX capture in ../shared/redfish/mockups")


def _comparable(inv: Any) -> dict[str, Any]:
    d = inv.model_dump(mode="json")
    for k in ("url", "duration_s", "requests", "collected_at", "warnings"):
        d["bmc"].pop(k, None)
    for f in d["fans"]:
        f.pop("reading", None)  # live values in the simulator
    return d


def _count_gets(c: RedfishClient) -> list[str]:
    seen: list[str] = []
    send = c.transport.request

    async def request(method: str, target: str, *a: Any, **kw: Any) -> Any:
        if method == "GET":
            seen.append(target)
        return await send(method, target, *a, **kw)

    c.transport.request = request  # type: ignore[method-assign]
    return seen


async def test_multi_level_expand_saves_the_collection_reads() -> None:
    async with serve_tree(mockups_dir() / TREE, "sim") as url, RedfishClient(url, "root", "calvin") as c:
        gets = _count_gets(c)
        inv = await collect_inventory(c)
    assert inv.psus and inv.firmware and inv.nics
    paths = [g.split("?")[0] for g in gets]
    # the collections came inside their parents: never read on their own
    for leaf in ("/PowerSupplies", "/Fans", "/Ports", "/FirmwareInventory"):
        assert not [p for p in paths if p.endswith(leaf)], leaf
    assert any(g.endswith("/PowerSubsystem?$expand=.($levels=2)") for g in gets)


async def test_refused_expand_on_a_resource_reads_it_plainly() -> None:
    async with serve_tree(mockups_dir() / TREE, "static") as url, RedfishClient(url, "root", "calvin") as c:
        expected = _comparable(await collect_inventory(c))

    bmc = MockupBMC(mockups_dir() / TREE, address=next_address())
    real_get = bmc._get

    def get(request: web.Request, norm: str) -> web.Response:
        doc = bmc.doc(norm)
        if "$expand" in request.query and doc is not None and "Members" not in doc:
            return bmc._err(400, "Base.1.8.QueryNotSupportedOnResource", "no $expand here")
        return real_get(request, norm)

    bmc._get = get  # type: ignore[method-assign]
    async with bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        got = _comparable(await collect_inventory(c))
        refused = [p for m, p in bmc.requests if m == "GET" and "PowerSubsystem?$expand" in p]
        plain = [p for m, p in bmc.requests if m == "GET" and p.endswith("/PowerSubsystem")]
    assert got == expected
    assert refused and len(plain) == len(refused)
