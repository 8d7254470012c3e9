"""Sessions, auth, ETags, paging, resets, boot override, manager reset, updates, BIOS, certificates."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl

import aiohttp
import pytest
from sim_core_helpers import AUTH, fleet_and_client, get_json

from redfleet.model.fleetfile import parse_fleet_yaml

pytestmark = pytest.mark.usefixtures("mockups")

DELL_SYS = "/redfish/v1/Systems/System.Embedded.1"
DELL_MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"


def msg_id(doc) -> str:
    return doc["error"]["@Message.ExtendedInfo"][0]["MessageId"]


async def wait_for(pred, limit=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if await pred():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_sessions_limit_logout_basic_and_401(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1}, base_address="127.10.10.1") as (fleet, client):
        url = fleet.nodes[0].bmc_url
        sessions = url + "/redfish/v1/SessionService/Sessions"
        async with client.post(sessions, json={"UserName": "root", "Password": "wrong"}) as r:
            assert r.status == 401
        tokens = []
        for _ in range(8):  # iDRAC: 8 sessions
            async with client.post(sessions, json={"UserName": "root", "Password": "calvin"}) as r:
                assert r.status == 201
                assert r.headers["Location"].startswith("/redfish/v1/SessionService/Sessions/")
                tokens.append((r.headers["X-Auth-Token"], r.headers["Location"]))
        async with client.post(sessions, json={"UserName": "root", "Password": "calvin"}) as r:
            assert r.status == 503
            assert msg_id(await r.json()).endswith("SessionLimitExceeded")
        st, doc, _ = await get_json(client, url + DELL_SYS, headers={"X-Auth-Token": tokens[0][0]})
        assert st == 200 and doc["Id"] == "System.Embedded.1"
        st, doc, _ = await get_json(client, sessions, headers={"X-Auth-Token": tokens[0][0]})
        assert doc["Members@odata.count"] == 8
        async with client.delete(url + tokens[0][1], headers={"X-Auth-Token": tokens[0][0]}) as r:
            assert r.status in (200, 204)
        st, _, _ = await get_json(client, url + DELL_SYS, headers={"X-Auth-Token": tokens[0][0]})
        assert st == 401
        async with client.post(sessions, json={"UserName": "root", "Password": "calvin"}) as r:
            assert r.status == 201  # the slot is free again
        st, _, _ = await get_json(client, url + DELL_SYS)  # Basic auth
        assert st == 200
        bad = {"Authorization": "Basic " + base64.b64encode(b"root:nope").decode()}
        st, doc, headers = await get_json(client, url + DELL_SYS, headers=bad)
        assert st == 401 and headers["WWW-Authenticate"].startswith("Basic") and "error" in doc


async def test_etag_if_match(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1}, base_address="127.10.11.1") as (fleet, client):
        url = fleet.nodes[0].bmc_url + DELL_SYS
        _, doc, headers = await get_json(client, url)
        etag = headers["ETag"]
        assert "PATCH" in headers["Allow"] and "DELETE" not in headers["Allow"]
        _, _, h2 = await get_json(client, fleet.nodes[0].bmc_url + "/redfish/v1/SessionService/Sessions")
        assert "POST" in h2["Allow"]
        _, _, h3 = await get_json(client, fleet.nodes[0].bmc_url + "/redfish/v1/Systems?$top=1")  # aiohttp path
        assert h3["Allow"] == "GET, HEAD"
        async with client.patch(url, json={"AssetTag": "rack7"}, headers={**AUTH, "If-Match": 'W/"deadbeef"'}) as r:
            assert r.status == 412
            assert msg_id(await r.json()).endswith("PreconditionFailed")
        async with client.patch(url, json={"AssetTag": "rack7"}, headers={**AUTH, "If-Match": etag}) as r:
            assert r.status == 200
        _, doc, headers = await get_json(client, url)
        assert doc["AssetTag"] == "rack7" and headers["ETag"] != etag
        async with client.patch(url, json={"NoSuchThing": 1}, headers=AUTH) as r:
            assert r.status == 400 and msg_id(await r.json()).endswith("PropertyUnknown")
        async with client.patch(url, json={"PowerState": "Off"}, headers=AUTH) as r:
            assert r.status == 400 and msg_id(await r.json()).endswith("PropertyNotWritable")


async def test_log_paging_and_growth(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1}, base_address="127.10.12.1") as (fleet, client):
        info = fleet.nodes[0]
        node = fleet.node(info.name)
        coll = node.entries_collection(node.facts.sel_path)
        _, before, _ = await get_json(client, info.bmc_url + coll)
        for i in range(120):
            node.append_log(f"test event {i}", severity="Warning")
        st, doc, _ = await get_json(client, info.bmc_url + coll)
        total = before["Members@odata.count"] + 120
        assert doc["Members@odata.count"] == total and len(doc["Members"]) == 50
        seen = [m["@odata.id"] for m in doc["Members"]]
        while "Members@odata.nextLink" in doc:
            st, doc, _ = await get_json(client, info.bmc_url + doc["Members@odata.nextLink"])
            assert st == 200
            seen += [m["@odata.id"] for m in doc["Members"]]
        assert len(seen) == len(set(seen)) == total
        st, doc, _ = await get_json(client, info.bmc_url + coll + "?$skip=10&$top=5")
        assert [m["@odata.id"] for m in doc["Members"]] == seen[10:15]
        st, entry, _ = await get_json(client, info.bmc_url + seen[-1])
        assert st == 200 and entry["Message"] == "test event 119"


async def test_reset_state_machine_and_boot_override(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1, "hpe": 1}, base_address="127.10.13.1",
                                time_scale=200.0) as (fleet, client):
        dell = fleet.nodes[0]
        reset = dell.bmc_url + DELL_SYS + "/Actions/ComputerSystem.Reset"
        async with client.post(reset, json={"ResetType": "Bogus"}, headers=AUTH) as r:
            assert r.status == 400
            doc = await r.json()
            assert msg_id(doc).endswith("ActionParameterValueNotInList")
        async with client.post(reset, json={}, headers=AUTH) as r:
            assert r.status == 400 and msg_id(await r.json()).endswith("ActionParameterMissing")
        # boot override, validated
        sysurl = dell.bmc_url + DELL_SYS
        async with client.patch(sysurl, json={"Boot": {"BootSourceOverrideTarget": "Nowhere"}}, headers=AUTH) as r:
            assert r.status == 400 and msg_id(await r.json()).endswith("PropertyValueNotInList")
        body = {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
        async with client.patch(sysurl, json=body, headers=AUTH) as r:
            assert r.status == 200
        async with client.post(reset, json={"ResetType": "ForceOff"}, headers=AUTH) as r:
            assert r.status == 204
        _, doc, _ = await get_json(client, sysurl)
        assert doc["PowerState"] == "Off" and doc["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        async with client.post(reset, json={"ResetType": "On"}, headers=AUTH) as r:
            assert r.status == 204
        _, doc, _ = await get_json(client, sysurl)
        assert doc["PowerState"] == "PoweringOn"

        async def is_on():
            _, d, _ = await get_json(client, sysurl)
            return d["PowerState"] == "On"

        assert await wait_for(is_on)
        _, doc, _ = await get_json(client, sysurl)
        assert doc["Boot"]["BootSourceOverrideEnabled"] == "Disabled"  # Once was consumed by the boot
        # HPE: its own allowable values (no PowerCycle on iLO 5)
        hpe = fleet.nodes[1]
        async with client.post(hpe.bmc_url + "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                               json={"ResetType": "PowerCycle"}, headers=AUTH) as r:
            assert r.status == 400
        async with client.post(hpe.bmc_url + "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                               json={"ResetType": "ForceRestart"}, headers=AUTH) as r:
            assert r.status == 204
        node = fleet.node(hpe.name)
        assert node.power_state in ("Off", "PoweringOn")


async def test_manager_reset_unreachable_then_back(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 2}, base_address="127.10.14.1", time_scale=100.0) as (
        fleet,
        client,
    ):
        a, b = fleet.nodes
        async with client.post(a.bmc_url + DELL_MGR + "/Actions/Manager.Reset", json={"ResetType": "GracefulRestart"},
                               headers=AUTH) as r:
            assert r.status == 204
        await asyncio.sleep(0.05)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(a.bmc_url + "/redfish/v1", ssl=False)
        st, _, _ = await get_json(client, b.bmc_url + "/redfish/v1")  # the neighbour is unaffected
        assert st == 200

        async def back():
            try:
                async with aiohttp.ClientSession() as fresh, fresh.get(a.bmc_url + "/redfish/v1", ssl=False) as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        assert await wait_for(back, limit=5.0)  # 60 s / 100


async def test_simple_update_and_multipart_push(tmp_path):
    async with fleet_and_client(tmp_path, mix={"supermicro": 1}, base_address="127.10.15.1", time_scale=500.0) as (
        fleet,
        client,
    ):
        info = fleet.nodes[0]
        node = fleet.node(info.name)
        fi = node.facts.firmware_inventory
        members = node.firmware_members()
        target = next(m for m in members if "bmc" in m.lower())
        _, before, _ = await get_json(client, info.bmc_url + target)
        async with client.post(info.bmc_url + "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
                               json={"ImageURI": "http://repo/bmc_fw_9.8.7.bin", "Targets": [target]},
                               headers=AUTH) as r:
            assert r.status == 202
            monitor = r.headers["Location"]
            assert (await r.json())["TaskState"] in ("New", "Running")

        async def done():
            st, _d, _ = await get_json(client, info.bmc_url + monitor)
            return st == 200

        assert await wait_for(done)
        _, after, _ = await get_json(client, info.bmc_url + target)
        assert after["Version"] == "9.8.7" != before["Version"]
        _, tasks, _ = await get_json(client, info.bmc_url + node.facts.task_collection)
        assert tasks["Members@odata.count"] >= 1
        # multipart push
        form = aiohttp.FormData()
        form.add_field("UpdateParameters", f'{{"Targets": ["{target}"]}}', content_type="application/json")
        form.add_field("UpdateFile", b"\0" * 1024, filename="bmc-10.1.2.bin", content_type="application/octet-stream")
        async with client.post(info.bmc_url + node.facts.multipart_push_uri, data=form, headers=AUTH) as r:
            assert r.status == 202
            monitor = r.headers["Location"]
        assert await wait_for(done)
        _, after, _ = await get_json(client, info.bmc_url + target)
        assert after["Version"] == "10.1.2"
        assert fi


async def test_dell_bios_job_applied_on_reset(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1, "hpe": 1}, base_address="127.10.16.1",
                                time_scale=500.0) as (fleet, client):
        dell = fleet.nodes[0]
        bios = dell.bmc_url + DELL_SYS + "/Bios"
        _, cur, _ = await get_json(client, bios)
        attr, value = "BootMode", "Uefi"
        new = "Bios" if cur["Attributes"][attr] == "Uefi" else "Uefi"
        async with client.patch(bios + "/Settings", json={"Attributes": {"NoSuchAttr": 1}}, headers=AUTH) as r:
            assert r.status == 400
        async with client.patch(bios + "/Settings", json={"Attributes": {attr: new}}, headers=AUTH) as r:
            assert r.status == 200
        _, pending, _ = await get_json(client, bios + "/Settings")
        assert pending["Attributes"] == {attr: new}
        reset = dell.bmc_url + DELL_SYS + "/Actions/ComputerSystem.Reset"
        node = fleet.node(dell.name)

        async def on():
            return node.power_state == "On"

        # without a job iDRAC keeps the settings pending across a reboot
        async with client.post(reset, json={"ResetType": "ForceRestart"}, headers=AUTH) as r:
            assert r.status == 204
        assert await wait_for(on)
        _, cur2, _ = await get_json(client, bios)
        assert cur2["Attributes"][attr] == cur["Attributes"][attr]
        async with client.post(dell.bmc_url + DELL_MGR + "/Jobs",
                               json={"TargetSettingsURI": DELL_SYS + "/Bios/Settings"}, headers=AUTH) as r:
            assert r.status == 200
            job_url = r.headers["Location"]
        _, job, _ = await get_json(client, dell.bmc_url + job_url)
        assert job["JobState"] == "Scheduled"
        async with client.post(reset, json={"ResetType": "ForceRestart"}, headers=AUTH) as r:
            assert r.status == 204
        await asyncio.sleep(0.05)
        assert await wait_for(on)
        _, cur3, _ = await get_json(client, bios)
        assert cur3["Attributes"][attr] == new
        _, job, _ = await get_json(client, dell.bmc_url + job_url)
        assert job["JobState"] == "Completed" and job["PercentComplete"] == 100
        _, pending, _ = await get_json(client, bios + "/Settings")
        assert pending["Attributes"] == {}
        # HPE: pending settings apply at the next reset, no job
        hpe = fleet.nodes[1]
        hnode = fleet.node(hpe.name)
        settings = hnode.facts.bios_settings_path
        _, hb, _ = await get_json(client, hpe.bmc_url + hnode.facts.bios_path)
        key = next(k for k, v in hb["Attributes"].items() if isinstance(v, str) and v in ("Enabled", "Disabled"))
        flipped = "Disabled" if hb["Attributes"][key] == "Enabled" else "Enabled"
        async with client.patch(hpe.bmc_url + settings, json={"Attributes": {key: flipped}}, headers=AUTH) as r:
            assert r.status == 200
        async with client.post(hpe.bmc_url + "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                               json={"ResetType": "ForceRestart"}, headers=AUTH) as r:
            assert r.status == 204
        await asyncio.sleep(0.05)

        async def hon():
            return hnode.power_state == "On"

        assert await wait_for(hon)
        _, hb2, _ = await get_json(client, hpe.bmc_url + hnode.facts.bios_path)
        assert hb2["Attributes"][key] == flipped
        assert value


async def test_distinct_certificates_and_rotation(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 2, "openbmc": 1}, base_address="127.10.17.1") as (
        fleet,
        _client,
    ):
        fps = [n.cert_fingerprint for n in fleet.nodes]
        assert len(set(fps)) == 3 and all(fp and fp.startswith("sha256:") for fp in fps)

        async def served(n) -> str:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            _reader, writer = await asyncio.open_connection(n.address, fleet.port, ssl=ctx)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            return "sha256:" + hashlib.sha256(der).hexdigest()

        for n in fleet.nodes:
            assert await served(n) == n.cert_fingerprint
        new = fleet.rotate_certificate(fleet.nodes[0].name)
        assert new != fps[0]
        assert await served(fleet.nodes[0]) == new == fleet.nodes[0].cert_fingerprint
        ff = parse_fleet_yaml(fleet.fleet_file().to_yaml())
        assert ff.nodes[0].tls_fingerprint == new and ff.credentials["sim"].password == "calvin"
        assert ff.nodes[0].credential == "sim" and ff.nodes[2].flavor == "openbmc"
    # the same seed gives the same certificates in a new cache
    async with fleet_and_client(tmp_path / "other", mix={"dell": 2, "openbmc": 1}, base_address="127.10.17.1") as (
        fleet2,
        _c,
    ):
        assert [n.cert_fingerprint for n in fleet2.nodes] == fps


async def test_throttle_latency_and_down(tmp_path):
    async with fleet_and_client(tmp_path, mix={"ami": 2}, http=True, base_address="127.10.18.1",
                                latency="const:1ms") as (fleet, client):
        a, _b = fleet.nodes
        node = fleet.node(a.name)
        node.throttle(429, seconds=1000)
        st, doc, headers = await get_json(client, a.bmc_url + "/redfish/v1/Systems")
        assert st == 429 and "Retry-After" in headers and msg_id(doc).endswith("ServiceTemporarilyUnavailable")
        node.throttle(429, seconds=0)
        st, _, _ = await get_json(client, a.bmc_url + "/redfish/v1/Systems")
        assert st == 200
        node.set_down(True)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(a.bmc_url + "/redfish/v1")
        node.set_down(False)
        st, _, _ = await get_json(client, a.bmc_url + "/redfish/v1")
        assert st == 200


async def test_dell_settings_apply_time_creates_job(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 1}, base_address="127.10.19.1", time_scale=500.0) as (
        fleet,
        client,
    ):
        dell = fleet.nodes[0]
        node = fleet.node(dell.name)
        bios = dell.bmc_url + DELL_SYS + "/Bios"
        _, cur, _ = await get_json(client, bios)
        new = "Disabled" if cur["Attributes"]["SriovGlobalEnable"] == "Enabled" else "Enabled"
        body = {"Attributes": {"SriovGlobalEnable": new}, "@Redfish.SettingsApplyTime": {"ApplyTime": "OnReset"}}
        async with client.patch(bios + "/Settings", json=body, headers=AUTH) as r:
            assert r.status == 202
            job_url = r.headers["Location"]
        assert "/Jobs/JID_" in job_url
        _, jobs, _ = await get_json(client, dell.bmc_url + "/redfish/v1/JobService/Jobs")
        assert any(m["@odata.id"].endswith(job_url.rsplit("/", 1)[-1]) for m in jobs["Members"])
        node.reset("ForceRestart")
        for _ in range(300):
            if node.power_state == "On":
                break
            await asyncio.sleep(0.01)
        _, cur2, _ = await get_json(client, bios)
        assert cur2["Attributes"]["SriovGlobalEnable"] == new
        _, job, _ = await get_json(client, dell.bmc_url + job_url)
        assert job["JobState"] == "Completed"


async def test_password_change_applies_to_that_bmc(tmp_path):
    async with fleet_and_client(tmp_path, mix={"dell": 2}, base_address="127.10.22.1") as (fleet, client):
        a, b = fleet.nodes
        acct = a.bmc_url + "/redfish/v1/AccountService/Accounts/2"
        async with client.patch(acct, json={"Password": "n3w-secret"}, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())["Password"] is None
        st, _, _ = await get_json(client, a.bmc_url + DELL_SYS)
        assert st == 401
        new = {"Authorization": "Basic " + base64.b64encode(b"root:n3w-secret").decode()}
        st, _, _ = await get_json(client, a.bmc_url + DELL_SYS, headers=new)
        assert st == 200
        st, _, _ = await get_json(client, b.bmc_url + DELL_SYS)  # other BMCs keep the fleet password
        assert st == 200


async def test_http_push_of_a_large_image(tmp_path):
    async with fleet_and_client(tmp_path, mix={"openbmc": 1}, http=True, base_address="127.10.23.1",
                                time_scale=500.0) as (fleet, client):
        info = fleet.nodes[0]
        node = fleet.node(info.name)
        push = node.facts.http_push_uri
        image = b"\0" * (3 << 20)  # 3 MiB, over aiohttp's default body limit
        headers = {**AUTH, "Content-Type": "application/octet-stream",
                   "Content-Disposition": 'attachment; filename="obmc-phosphor-image-2.16.1.static.mtd.tar"'}
        async with client.post(info.bmc_url + push, data=image, headers=headers) as r:
            assert r.status == 202
            monitor = r.headers["Location"]

        async def done():
            st, _d, _ = await get_json(client, info.bmc_url + monitor)
            return st == 200

        assert await wait_for(done)
        versions = [node.get_doc(p)["Version"] for p in node.firmware_members()]
        assert "2.16.1" in versions
