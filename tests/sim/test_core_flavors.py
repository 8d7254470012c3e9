"""Every flavor serves its tree, with per-node identity."""

from __future__ import annotations

import asyncio

import pytest
from sim_core_helpers import AUTH, fleet_and_client, get_json

from redfleet.sim.flavors import FLAVORS, redfish_flavors

pytestmark = pytest.mark.usefixtures("mockups")


@pytest.mark.parametrize("flavor", redfish_flavors())
async def test_flavor_serves_its_tree(flavor, tmp_path):
    async with fleet_and_client(tmp_path, mix={flavor: 2}, http=True, base_address="127.10.1.1") as (fleet, client):
        a, b = fleet.nodes
        assert a.flavor == b.flavor == flavor
        # unauthenticated: /redfish, service root, odata, $metadata
        for path in ("/redfish", "/redfish/v1", "/redfish/v1/", "/redfish/v1/odata", "/redfish/v1/$metadata"):
            async with client.get(a.bmc_url + path) as r:
                assert r.status == 200, path
        status, _, headers = await get_json(client, a.bmc_url + "/redfish/v1/Systems", headers={})
        assert status == 401 and "Basic" in headers.get("WWW-Authenticate", "")
        # every resource of the captured tree answers 200 (captured query pages aside)
        tpl = fleet.node(a.name).template
        dyn = fleet.node(a.name).dyn
        plugged = fleet.config.dynamics is not False  # sim-dyn owns EventService subscriptions and may hide things
        paths = [
            p
            for p in tpl.paths()
            if "?" not in p and not dyn.hidden(p) and not (plugged and "/EventService/Subscriptions/" in p)
        ]
        sem = asyncio.Semaphore(16)
        bad: list[tuple[str, int]] = []

        async def one(p: str) -> None:
            async with sem, client.get(a.bmc_url + p.replace("#", "%23"), headers=AUTH) as r:
                await r.read()
                if r.status != 200:
                    bad.append((p, r.status))

        await asyncio.gather(*(one(p) for p in paths))
        assert not bad, bad[:10]
        # per-node identity differs, is shaped like the original, and is stable
        sys_path = fleet.node(a.name).facts.system_path
        _, da, _ = await get_json(client, a.bmc_url + sys_path)
        _, db, _ = await get_json(client, b.bmc_url + sys_path)
        captured = tpl.doc(sys_path)
        for key in ("UUID", "SerialNumber"):
            if captured.get(key) and captured[key] in tpl.idents:
                assert da[key] != db[key] != captured[key]
                assert len(da[key]) == len(captured[key])
        assert da["@odata.id"] == db["@odata.id"] == captured["@odata.id"]
        _, da2, _ = await get_json(client, a.bmc_url + sys_path)
        assert da2.get("UUID") == da.get("UUID")
        # the BMC's own network interface shows the simulated address
        node = fleet.node(a.name)
        ips = [v for v, k in tpl.idents.items() if k.ip]
        if ips:
            hit = next(p for p in tpl.paths() if "/EthernetInterfaces/" in p and ips[0] in str(tpl.doc(p)))
            _, nic, _ = await get_json(client, a.bmc_url + hit)
            assert a.address in str(nic) and ips[0] not in str(nic)
            assert node.get_doc(hit) == nic


async def test_gpu_placement_and_sse(tmp_path):
    facts = {name: FLAVORS[name].facts() for name in redfish_flavors()}
    assert facts["supermicro"].gpus and all("/Chassis/1/PCIeDevices/" in p for p in facts["supermicro"].gpus)
    assert len(facts["dgx"].gpus) == 8 and all("HGX_Baseboard_0/Processors/GPU_SXM_" in p for p in facts["dgx"].gpus)
    assert facts["dell"].gpus == ["/redfish/v1/Systems/System.Embedded.1/Processors/Video.Slot.2-1"]
    assert facts["openbmc"].sse_uri == "/redfish/v1/EventService/SSE"
    assert facts["hpe"].sse_uri is None
    assert facts["openbmc"].expand_max_levels == 0 and facts["dgx"].expand_max_levels == 5


async def test_expand_and_select(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1, "openbmc": 1}, http=True, base_address="127.10.2.1") as (
        fleet,
        client,
    ):
        dell, obmc = fleet.nodes
        st, doc, _ = await get_json(client, dell.bmc_url + "/redfish/v1/Systems?$expand=.($levels=1)")
        assert st == 200
        member = doc["Members"][0]
        assert member["@odata.id"] == "/redfish/v1/Systems/System.Embedded.1" and "PowerState" in member
        st, doc, _ = await get_json(client, dell.bmc_url + "/redfish/v1/Systems?$expand=*($levels=3)")
        assert st == 400 and "QueryParameterOutOfRange" in doc["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        st, doc, _ = await get_json(client, obmc.bmc_url + "/redfish/v1/Systems?$expand=.")
        assert st == 400 and doc["error"]["@Message.ExtendedInfo"][0]["MessageId"].endswith("QueryNotSupported")
        st, doc, _ = await get_json(client, dell.bmc_url + "/redfish/v1/Systems/System.Embedded.1?$select=PowerState")
        assert st == 200 and set(k for k in doc if not k.startswith("@")) == {"PowerState"}
        st, doc, _ = await get_json(client, dell.bmc_url + "/redfish/v1/Systems?only")
        assert st == 200 and doc["@odata.id"] == "/redfish/v1/Systems/System.Embedded.1"


async def test_hpe_link_style(tmp_path):
    async with fleet_and_client(tmp_path, mix={"hpe": 1}, http=True, base_address="127.10.3.1") as (fleet, client):
        (n,) = fleet.nodes
        _, system, _ = await get_json(client, n.bmc_url + "/redfish/v1/Systems/1")
        bios_link = system["Bios"]["@odata.id"]
        for path in (bios_link, "/redfish/v1/systems/1/bios/", "/redfish/v1/Systems/1/Bios", "/redfish/v1/SYSTEMS/1/"):
            st, doc, _ = await get_json(client, n.bmc_url + path)
            assert st == 200, path
        st, doc, _ = await get_json(client, n.bmc_url + "/redfish/v1/systems/1/bios/settings/")
        assert st == 200 and doc["@odata.id"].endswith("/")


async def test_mockup_tree(tmp_path, mockups):
    async with fleet_and_client(tmp_path, mockup=mockups / "public-tower", base_address="127.10.4.1") as (
        fleet,
        client,
    ):
        (n,) = fleet.nodes
        assert n.flavor == "mockup" and n.bmc_url.startswith("https://")
        st, doc, _ = await get_json(client, n.bmc_url + "/redfish/v1/Systems")
        assert st == 200
        sys_path = doc["Members"][0]["@odata.id"]
        st, doc, _ = await get_json(
            client, n.bmc_url + sys_path + "/Actions/ComputerSystem.Reset", headers=AUTH
        )
        assert st in (404, 405)  # GET on an action
        async with client.post(n.bmc_url + sys_path + "/Actions/ComputerSystem.Reset", headers=AUTH,
                               json={"ResetType": "ForceOff"}) as r:
            assert r.status == 204
        st, doc, _ = await get_json(client, n.bmc_url + sys_path)
        assert doc["PowerState"] == "Off"
        # a single --mockup BMC serves identities verbatim; doubled slashes and a trailing slash resolve
        captured = fleet.node(n.name).template.doc(sys_path)
        assert doc["SerialNumber"] == captured["SerialNumber"] and doc["UUID"] == captured["UUID"]
        for variant in ("/" + sys_path, sys_path + "/", sys_path.replace("/v1/", "//v1//")):
            st, again, _ = await get_json(client, n.bmc_url + variant)
            assert st == 200 and again["@odata.id"] == sys_path, variant


async def test_captured_pages_are_one_collection(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dgx": 1}, http=True, base_address="127.10.5.1") as (fleet, client):
        url = fleet.nodes[0].bmc_url + "/redfish/v1/Chassis/DGX/Sensors"
        st, doc, _ = await get_json(client, url)
        assert st == 200 and len(doc["Members"]) == doc["Members@odata.count"] > 75
        assert "Members@odata.nextLink" not in doc  # the capture merged the BMC's pages into the first one
        st, page, _ = await get_json(client, url + "?$skip=75&$top=10")
        assert [m["@odata.id"] for m in page["Members"]] == [m["@odata.id"] for m in doc["Members"][75:85]]
        st, rest, _ = await get_json(client, url + "?$skip=75")
        assert len(rest["Members"]) == len(doc["Members"]) - 75 and "Members@odata.nextLink" not in rest
