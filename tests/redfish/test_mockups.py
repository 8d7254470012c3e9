"""Inventory of every captured tree in ../shared/redfish/mockups, checked against the files themselves."""

from __future__ import annotations

import pytest
from mockup_oracle import Tree
from rf_helpers import MOCKUPS, serve_tree

from redfleet.model.inventory import TOP_LEVEL_KEYS, Inventory
from redfleet.paths import mockups_dir
from redfleet.redfish import RedfishClient, collect_inventory, read_sensors

pytestmark = pytest.mark.skipif(not MOCKUPS, reason="no mockups in ../shared/redfish/mockups")

SERVERS = ["static", "sim"]


async def _inventory(tree: str, server: str) -> Inventory:
    async with serve_tree(mockups_dir() / tree, server) as url, RedfishClient(url, "root", "calvin") as c:
        return await collect_inventory(c)


@pytest.fixture(scope="module")
def oracle() -> dict[str, Tree]:
    return {name: Tree(mockups_dir() / name) for name in MOCKUPS}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("tree", MOCKUPS)
async def test_inventory_matches_files(tree: str, server: str, oracle: dict[str, Tree]) -> None:
    t = oracle[tree]
    inv = await _inventory(tree, server)
    data = inv.model_dump(mode="json")
    assert tuple(data) == TOP_LEVEL_KEYS

    # systems: count and key values
    systems = t.systems()
    assert len(inv.systems) == len(systems)
    by_id = {s.id: s for s in inv.systems}
    for s in systems:
        got = by_id[s["Id"]]
        assert got.manufacturer == ((s.get("Manufacturer") or "").strip() or None)
        assert got.model == ((s.get("Model") or "").strip() or None)
        assert got.serial == ((s.get("SerialNumber") or "").strip() or None)  # --mockup serves identities verbatim
        if server == "static":  # the simulator runs its own power state machine
            assert got.power_state == s.get("PowerState")
        assert got.bios_version == ((s.get("BiosVersion") or "").strip() or None)
        assert got.source and got.source.lower().rstrip("/") == s["@odata.id"].lower().rstrip("/")

    # CPUs, populated DIMMs, firmware, PSUs, fans
    assert len(inv.cpus) == len(t.cpus())
    assert sorted(c.model or "" for c in inv.cpus) == sorted((c.get("Model") or "").strip() for c in t.cpus())
    dimms = t.dimms()
    assert len(inv.memory) == len(dimms)
    assert sum(m.capacity_mib or 0 for m in inv.memory) == sum(int(m["CapacityMiB"]) for m in dimms)
    fw = t.firmware()
    assert len(inv.firmware) == len(fw)
    assert sorted(f.version or "" for f in inv.firmware) == sorted((f.get("Version") or "").strip() for f in fw)
    assert len(inv.psus) == t.psus()
    assert len(inv.fans) == t.fans()

    # GPUs: found wherever they are, one per physical device
    count, serials = t.gpu_expectation()
    assert len(inv.gpus) == count, [g.sources for g in inv.gpus]
    assert {g.serial for g in inv.gpus if g.serial} == serials
    for g in inv.gpus:
        assert set(data["gpus"][0]) >= {"id", "model", "serial", "location", "health", "source"}
        assert g.source

    # every item says where it came from
    for section in ("cpus", "memory", "drives", "nics", "psus", "fans", "firmware"):
        for item in getattr(inv, section):
            assert item.source, (section, item)


async def test_named_gpu_facts(oracle: dict[str, Tree]) -> None:
    """The facts the issue names, with the expected numbers still read from the files."""
    sm = oracle.get("supermicro")
    if sm is not None:
        assert not [p for p in sm.processors() if p.get("ProcessorType") == "GPU"]  # none is a Processor
        inv = await _inventory("supermicro", "static")
        assert len(inv.gpus) == sm.gpu_expectation()[0] == 8
        assert all("H100" in (g.model or "") for g in inv.gpus)
        assert all(g.found_via == ["pcie"] for g in inv.gpus)
    dgx = oracle.get("nvidia_viking")
    if dgx is not None:
        inv = await _inventory("nvidia_viking", "static")
        assert len(inv.gpus) == dgx.gpu_expectation()[0] == 8
        assert all(g.serial and "H100" in (g.model or "") for g in inv.gpus)
        # the host's PCIe view of each GPU merged into the baseboard's entry, not listed again
        assert sum("pcie" in g.found_via for g in inv.gpus) == 8
    dell = oracle.get("dell")
    if dell is not None:
        inv = await _inventory("dell", "static")
        assert len(inv.gpus) == dell.gpu_expectation()[0] == 1
        g = inv.gpus[0]
        assert g.model == "NVIDIA H100 PCIe"
        assert g.pci_vendor_id == "0x10de"
        assert set(g.found_via) == {"processor", "pcie"}


@pytest.mark.parametrize("tree", MOCKUPS)
async def test_sensors_every_tree(tree: str) -> None:
    async with serve_tree(mockups_dir() / tree, "static") as url, RedfishClient(url, "root", "calvin") as c:
        sr = await read_sensors(c)
    assert sr.bmc == c.base_url
    for r in sr.readings:
        assert r.source
    if tree in ("dell", "nvidia_viking", "hpe", "DL325", "supermicro", "public-rackmount1"):
        assert any(r.kind == "temperature" and r.value is not None for r in sr.readings)
