"""Built-in flavors start from their capture with its own faults repaired; --mockup serves the tree verbatim."""

from __future__ import annotations

import aiohttp

from redfleet.paths import mockups_dir
from redfleet.sim import SimConfig, SimFleet

# The iLO 5 capture was taken with one failed drive (Health Critical) in it.
FAILED_DRIVE = "/redfish/v1/Systems/1/Storage/DA00001C/Drives/DA00001C"


async def _drive_health(cfg: SimConfig) -> str:
    async with SimFleet(cfg) as fleet:
        url = fleet.nodes[0].bmc_url + FAILED_DRIVE
        auth = {"Authorization": aiohttp.encode_basic_auth("root", "calvin")}
        async with aiohttp.ClientSession(headers=auth) as http, http.get(url) as r:
            assert r.status == 200
            return str((await r.json())["Status"]["Health"])


async def test_flavor_repairs_captured_faults_mockup_keeps_them(mockups, tmp_path):
    import json

    captured = json.loads((mockups_dir() / "hpe" / "redfish/v1/Systems/1/Storage/DA00001C/Drives/DA00001C"
                           / "index.json").read_text())
    assert captured["Status"]["Health"] == "Critical"  # the premise: the real box had a failed drive
    flavor = SimConfig(mix={"hpe": 1}, port=0, http=True, base_address="127.10.230.1", cache_dir=tmp_path)
    assert await _drive_health(flavor) == "OK"
    verbatim = SimConfig(mockup=mockups_dir() / "hpe", port=0, http=True, base_address="127.10.231.1",
                         cache_dir=tmp_path)
    assert await _drive_health(verbatim) == "Critical"
