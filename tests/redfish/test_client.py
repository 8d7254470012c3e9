"""The client's mechanics: discovery, links, $expand vs walk, paging, limits, ETags, tasks, actions, errors."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from rf_helpers import MOCKUPS, next_address

from redfleet.paths import mockups_dir
from redfleet.redfish import (
    RedfishClient,
    collect_inventory,
    eject_virtual_media,
    insert_virtual_media,
    power,
    reset_manager,
    set_boot_override,
)
from redfleet.redfish import uri as U
from redfleet.redfish.errors import (
    ActionNotSupported,
    AuthenticationFailed,
    InsufficientPrivilege,
    NotFound,
    SessionLimitExceeded,
    TaskFailed,
    classify,
    http_error,
)
from redfleet.redfish.testing import MockupBMC, MockupTree
from redfleet.redfish.tls import JsonFilePinStore, bmc_key, normalize_fingerprint

pytestmark = pytest.mark.skipif("dell" not in MOCKUPS, reason="mockups missing")


@pytest.fixture(scope="module")
def dell() -> MockupTree:
    return MockupTree(mockups_dir() / "dell")


# ---- pure functions -----------------------------------------------------------------------------------------


def test_link_normalization() -> None:
    assert U.normalize("/redfish/v1/systems/1/") == "/redfish/v1/systems/1"
    assert U.normalize("/redfish/v1/Chassis/1/Power#/PowerSupplies/0") == "/redfish/v1/Chassis/1/Power"
    assert U.normalize("https://10.0.0.1/redfish/v1//Systems/") == "/redfish/v1/Systems"
    assert U.normalize("/redfish/v1/") == "/redfish/v1"
    assert U.normalize("/redfish/v1/Chassis/DGX/Sensors?$skip=150") == "/redfish/v1/Chassis/DGX/Sensors?$skip=150"
    assert U.key("/redfish/v1/systems/1/") == U.key("/redfish/v1/Systems/1")
    assert U.fragment("/redfish/v1/Chassis/1/Power#PowerSupplies/0") == "PowerSupplies/0"


def test_error_classification_by_message_id() -> None:
    body = {"error": {"code": "Base.1.8.GeneralError", "message": "x", "@Message.ExtendedInfo": [
        {"MessageId": "Base.1.12.SessionLimitExceeded", "Message": "too many sessions"}]}}
    assert classify(400, body) is SessionLimitExceeded  # MessageId wins over the status
    assert classify(400, {"error": {"@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.8.RAC0218"}]}}) \
        is SessionLimitExceeded
    assert classify(403, {}) is InsufficientPrivilege
    assert classify(404, None) is NotFound
    body = {"error": {"@Message.ExtendedInfo": [
        {"MessageId": "Base.1.8.ActionParameterValueNotInList", "Message": "bad ResetType"}]}}
    err = http_error(400, body, bmc="https://b", uri="/x")
    assert isinstance(err, ActionNotSupported) and err.message_ids == ["Base.1.8.ActionParameterValueNotInList"]
    assert "bad ResetType" in str(err) and err.to_dict()["kind"] == "unsupported"


def test_pin_store_json_file(tmp_path) -> None:
    path = tmp_path / "pins.json"
    store = JsonFilePinStore(path)
    fp = "AB:" * 31 + "CD"
    store.put("https://BMC1.example:443/redfish/v1", fp)
    again = JsonFilePinStore(path)
    assert again.get("https://bmc1.example") == normalize_fingerprint(fp)
    assert json.loads(path.read_text()) == {"https://bmc1.example:443": normalize_fingerprint(fp)}
    assert bmc_key("10.0.0.1") == "https://10.0.0.1:443"
    with pytest.raises(ValueError):
        normalize_fingerprint("sha256:xyz")


# ---- discovery, walking -------------------------------------------------------------------------------------


async def test_capabilities_and_quirks_from_root(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        assert c.caps.vendor == "Dell" and [q.name for q in c.quirks] == ["dell"]
        assert c.caps.expand_query() == "$expand=.($levels=1)"
        assert {"Systems", "Chassis", "Managers", "UpdateService", "SessionService"} <= set(c.caps.services)
        assert c.auth_used == "session"


@pytest.mark.parametrize("tree", ["supermicro", "hpe", "nvidia_viking"])
async def test_expand_and_walk_agree(tree: str) -> None:
    """Same inventory with the BMC's $expand and with a parallel walk; the walk needs more requests."""
    t = MockupTree(mockups_dir() / tree)
    results = {}
    for expand in (True, False):
        async with MockupBMC(t, address=next_address(), expand=expand) as bmc, \
                RedfishClient(bmc.url, "root", "calvin") as c:
            inv = await collect_inventory(c)
            results[expand] = (inv.counts(), len(bmc.requests), sum("$expand" in p for _, p in bmc.requests))
    assert results[True][0] == results[False][0]
    assert results[True][1] < results[False][1]
    assert results[True][2] > 0


async def test_expand_rejected_falls_back_to_walk(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        orig = bmc._get

        def reject_expand(request, norm):  # type: ignore[no-untyped-def]
            if "$expand" in request.query_string:
                return bmc._err(400, "Base.1.8.QueryNotSupported", "no $expand here")
            return orig(request, norm)

        bmc._get = reject_expand  # type: ignore[method-assign]
        async with RedfishClient(bmc.url, "root", "calvin") as c:
            inv = await collect_inventory(c)
        assert len(inv.cpus) == 2 and len(inv.gpus) == 1 and len(inv.memory) == 16


async def test_nextlink_paging(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address(), page_size=3, expand=False) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        members = await c.get_members("/redfish/v1/Systems/System.Embedded.1/Memory")
        doc = dell.get("/redfish/v1/Systems/System.Embedded.1/Memory")
        assert doc is not None
        assert len(members) == len(doc["Members"])
        assert sum("$skip" in p for _, p in bmc.requests) >= len(doc["Members"]) // 3


async def test_hpe_lowercase_trailing_slash_links() -> None:
    if "DL325" not in MOCKUPS:
        pytest.skip("DL325 missing")
    t = MockupTree(mockups_dir() / "DL325")
    async with MockupBMC(t, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        bios = await c.get("/redfish/v1/systems/1/bios/")  # iLO writes links like this
        again = await c.get("/redfish/v1/Systems/1/Bios")
        assert bios is again  # one resource, fetched once
        inv = await collect_inventory(c)
        assert inv.psus and all(p.source and "#" in p.source for p in inv.psus)


async def test_per_bmc_concurrency_cap(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address(), expand=False) as bmc:
        bmc.faults.slow = 0.02
        async with RedfishClient(bmc.url, "root", "calvin", max_concurrency=4) as c:
            members = await c.get_members("/redfish/v1/Systems/System.Embedded.1/Memory")
        assert len(members) > 8
        assert bmc.max_inflight == 4
        bmc.max_inflight = 0
        async with RedfishClient(bmc.url, "root", "calvin", max_concurrency=2) as c:
            await c.get_members("/redfish/v1/Systems/System.Embedded.1/Memory")
        assert bmc.max_inflight == 2


async def test_global_cap_across_bmcs(dell: MockupTree) -> None:
    limit = asyncio.Semaphore(3)
    async with MockupBMC(dell, address=next_address(), expand=False) as a, \
            MockupBMC(dell, address=next_address(), expand=False) as b:
        a.faults.slow = b.faults.slow = 0.02
        now = {"n": 0, "max": 0}
        for bmc in (a, b):
            inner = bmc._handle_inner

            async def counted(request, _inner=inner):  # type: ignore[no-untyped-def]
                now["n"] += 1
                now["max"] = max(now["max"], now["n"])
                try:
                    return await _inner(request)
                finally:
                    now["n"] -= 1

            bmc._handle_inner = counted  # type: ignore[method-assign]
        async with RedfishClient(a.url, "root", "calvin", global_limit=limit) as ca, \
                RedfishClient(b.url, "root", "calvin", global_limit=limit) as cb:
            await asyncio.gather(ca.get_members("/redfish/v1/Systems/System.Embedded.1/Memory"),
                                 cb.get_members("/redfish/v1/Systems/System.Embedded.1/Memory"))
        assert now["max"] == 3  # never more than 3 at once fleet-wide


async def test_wrong_password_is_auth_error(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        with pytest.raises(AuthenticationFailed) as ei:
            async with RedfishClient(bmc.url, "root", "wrong"):
                pass
        assert ei.value.kind == "auth" and "'root'" in ei.value.message


# ---- writes: ETag, tasks, actions ---------------------------------------------------------------------------


async def test_patch_uses_if_match_and_survives_broken_etags(dell: MockupTree) -> None:
    uri = "/redfish/v1/Systems/System.Embedded.1"
    async with MockupBMC(dell, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        await c.patch(uri, {"AssetTag": "rack7"})
        patch_reqs = [p for p in bmc.posts if p[0].startswith("PATCH")]
        assert patch_reqs and bmc.doc(uri)["AssetTag"] == "rack7"  # type: ignore[index]
        # stale ETag given by the caller: re-read and retried once
        await c.patch(uri, {"AssetTag": "rack8"}, etag='W/"stale"')
        assert bmc.doc(uri)["AssetTag"] == "rack8"  # type: ignore[index]
        # a BMC that rejects every If-Match: patched without it, and remembered
        bmc.faults.etag_broken = True
        await c.patch(uri, {"AssetTag": "rack9"})
        assert bmc.doc(uri)["AssetTag"] == "rack9"  # type: ignore[index]
        assert c._etag_broken


async def test_task_monitor_followed(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address(), task_steps=3) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        res = await c.post("/redfish/v1/Actions/Test.LongTask", {})
        assert res.status == 202 and res.task
        seen: list[str] = []
        out = await c.wait_task(res, poll=0.01, on_progress=lambda o: seen.append(o.state))
        assert out.state in ("Completed", "completed") and "Running" in seen
        res = await c.post("/redfish/v1/Actions/Test.LongTask", {"final": "Exception"})
        with pytest.raises(TaskFailed):
            await c.wait_task(res, poll=0.01)


async def test_dell_task_becomes_job(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        res = await c.post("/redfish/v1/Actions/Test.LongTask", {"dell_job": True})
        out = await c.wait_task(res, poll=0.01)
        assert out.state == "Completed" and "/Jobs/" in str(out.body.get("@odata.id"))  # type: ignore[union-attr]
        res = await c.post("/redfish/v1/Actions/Test.LongTask", {"dell_job": True, "final": "Failed"})
        with pytest.raises(TaskFailed) as ei:
            await c.wait_task(res, poll=0.01)
        assert "Dell job" in str(ei.value)


async def test_power_actions_audited(dell: MockupTree, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="redfleet.audit")
    sys_uri = "/redfish/v1/Systems/System.Embedded.1"
    async with MockupBMC(dell, address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin", name="node-7") as c:
        assert await power(c, "status") == "On"
        assert await power(c, "off", actor="alice", reason="ticket 42") == "ForceOff"
        assert await power(c, "status") == "Off"
        assert await power(c, "on", actor="alice") == "On"
        assert await power(c, "cycle") == "PowerCycle"
        assert await power(c, "reset") == "ForceRestart"
        assert (sys_uri + "/Actions/ComputerSystem.Reset", {"ResetType": "ForceOff"}) in bmc.posts
    recs = [r for r in caplog.records if r.name == "redfleet.audit"]
    first = recs[0].audit  # type: ignore[attr-defined]
    assert first["who"] == "alice" and first["what"] == "power off" and first["why"] == "ticket 42"
    assert first["node"] == "node-7" and first["target"] == sys_uri and "ForceOff" in first["outcome"]


async def test_power_cycle_falls_back_when_not_offered() -> None:
    if "DL325" not in MOCKUPS:
        pytest.skip("DL325 missing")
    t = MockupTree(mockups_dir() / "DL325")  # iLO 5: no PowerCycle in AllowableValues
    async with MockupBMC(t, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        assert await power(c, "cycle") == "ForceOff+On"
        types = [b.get("ResetType") for p, b in bmc.posts if p.endswith("ComputerSystem.Reset")]
        assert types == ["ForceOff", "On"]
        with pytest.raises(ValueError):
            await power(c, "explode")


async def test_boot_override_virtual_media_manager_reset(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        body = await set_boot_override(c, "pxe", once=True)
        assert body == {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        boot = bmc.doc("/redfish/v1/Systems/System.Embedded.1")["Boot"]  # type: ignore[index]
        assert boot["BootSourceOverrideTarget"] == "Pxe" and boot["BootSourceOverrideEnabled"] == "Once"
        await set_boot_override(c, "hdd", once=False)
        boot = bmc.doc("/redfish/v1/Systems/System.Embedded.1")["Boot"]  # type: ignore[index]
        assert boot["BootSourceOverrideEnabled"] == "Continuous"
        with pytest.raises(ActionNotSupported):
            await set_boot_override(c, "floppy")
        vm = await insert_virtual_media(c, "http://repo.example/boot.iso", reason="reimage")
        assert bmc.doc(vm)["Inserted"] is True  # type: ignore[index]
        assert bmc.doc(vm)["Image"] == "http://repo.example/boot.iso"  # type: ignore[index]
        await eject_virtual_media(c)
        assert bmc.doc(vm)["Inserted"] is False  # type: ignore[index]
        assert await reset_manager(c) == "GracefulRestart"


async def test_session_reused_for_all_requests(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        async with RedfishClient(bmc.url, "root", "calvin") as c:
            await collect_inventory(c)
        assert bmc.sessions_created == 1 and not bmc.sessions
        assert all("X-Auth-Token" for _ in bmc.requests)


@pytest.mark.parametrize("tree", ["supermicro", "dell", "nvidia_viking", "hpe"])
async def test_standard_redfish_alone_without_quirks(tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hardware redfleet has never seen: with no vendor quirk selected, the same inventory from standard Redfish."""
    import redfleet.redfish.quirks as quirks

    t = MockupTree(mockups_dir() / tree)
    counts = {}
    for with_quirks in (True, False):
        if not with_quirks:
            monkeypatch.setattr(quirks, "select_quirks", lambda caps, root: [])
        async with MockupBMC(t, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
            assert bool(c.quirks) == with_quirks
            inv = await collect_inventory(c)
            counts[with_quirks] = (inv.counts(), sorted(g.serial or "" for g in inv.gpus))
    assert counts[True] == counts[False]


async def test_gpu_from_hpe_oem_pci_list() -> None:
    """An iLO that lists a GPU only in its OEM PCIDevices collection (no Processor, no PCIe function class)."""
    if "DL325" not in MOCKUPS:
        pytest.skip("DL325 missing")
    t = MockupTree(mockups_dir() / "DL325")
    coll = "/redfish/v1/Systems/1/PCIDevices"
    members = list((t.get(coll) or {}).get("Members") or [])
    gpu_uri = f"{coll}/99"
    async with MockupBMC(t, address=next_address()) as bmc:
        bmc.overlay[U.key(coll)] = {"Members": [*members, {"@odata.id": gpu_uri}]}
        bmc.overlay[U.key(gpu_uri)] = {
            "@odata.id": gpu_uri, "@odata.type": "#HpeServerPciDevice.v2_0_0.HpeServerPciDevice", "Id": "99",
            "ClassCode": 3, "SubclassCode": 2, "VendorID": 4318, "DeviceID": 8890, "Name": "NVIDIA A40",
            "LocationString": "PCI-E Slot 3", "DeviceType": "Other PCI Device",
        }
        async with RedfishClient(bmc.url, "root", "calvin") as c:
            inv = await collect_inventory(c)
    assert len(inv.gpus) == 1
    g = inv.gpus[0]
    assert g.found_via == ["oem"] and g.model == "NVIDIA A40" and g.location == "PCI-E Slot 3"
    assert g.pci_vendor_id == "0x10de" and g.source == gpu_uri
