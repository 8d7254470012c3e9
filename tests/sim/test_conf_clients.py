"""Real clients against the simulator: OpenStack sushy and DMTF's redfish library read power state and reset a node
of every Redfish flavor over HTTPS, verifying the node's own certificate; Debian's ipmitool powers a legacy-ipmi
node of the same fleet off and on. Addresses: 127.12.210.0/24 (sim-conf's block)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FLAVORS = ("dell", "hpe", "supermicro", "dgx", "ami", "openbmc")
TIME_SCALE = 100.0  # a DGX boots in 180 s -> 1.8 s
USER, PASSWORD = "root", "calvin"

# One simulator process with all six Redfish flavors + a legacy-ipmi node: ~25 s to start on a loaded 2-CPU box.
pytestmark = pytest.mark.slow


# The simulator runs in its own process, as users run it: a client library that logs out from a finaliser (sushy's
# ``Sushy.__del__`` DELETEs its session) must never run on the simulator's event loop thread.
SIM_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from redfleet.sim import SimConfig, SimFleet

async def main():
    spec = json.loads(sys.argv[1])
    cfg = SimConfig(mix=spec["mix"], base_address=spec["base"], port=0, ipmi_port=0, time_scale=spec["scale"],
                    seed=5, cache_dir=Path(spec["certs"]))
    async with SimFleet(cfg) as fleet:
        nodes = []
        for info in fleet.nodes:
            cert = None
            if info.cert_fingerprint:
                cert = str(fleet.certs.path(info.name, info.address, fleet.node(info.name).cert_generation))
            nodes.append({"name": info.name, "flavor": info.flavor, "address": info.address, "url": info.bmc_url,
                          "cert": cert, "fingerprint": info.cert_fingerprint})
        rows = [r.model_dump() for r in fleet.fleet_file().nodes]
        ipmi_port = fleet.ipmi.port if fleet.ipmi is not None else None
        Path(spec["ready"]).write_text(json.dumps({"nodes": nodes, "rows": rows, "ipmi_port": ipmi_port}))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


class SimProcess:
    """``SimFleet`` in a child process; ``nodes``/``rows``/``ipmi_port`` as it reported them once listening."""

    def __init__(self, tmp: Path, mix: dict[str, int], base: str) -> None:
        self.ready = tmp / "ready.json"
        spec = {"mix": mix, "base": base, "scale": TIME_SCALE, "certs": str(tmp / "certs"), "ready": str(self.ready)}
        self.proc = subprocess.Popen([sys.executable, "-c", SIM_SCRIPT, json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                self.close()
                raise RuntimeError(f"simulator did not start:\n{out[-3000:]}")
            time.sleep(0.1)
        data = json.loads(self.ready.read_text())
        self.nodes: list[dict[str, Any]] = data["nodes"]
        self.rows: list[dict[str, Any]] = data["rows"]
        self.ipmi_port: int | None = data["ipmi_port"]

    def node(self, flavor: str) -> dict[str, Any]:
        return next(n for n in self.nodes if n["flavor"] == flavor)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, mockups: Path) -> Iterator[SimProcess]:
    mix = {f: 1 for f in FLAVORS} | {"legacy-ipmi": 1}
    sim = SimProcess(tmp_path_factory.mktemp("sim"), mix, "127.12.210.1")
    try:
        yield sim
    finally:
        sim.close()


def ca_file(node: dict[str, Any], tmp_path: Path) -> str:
    """The node's own self-signed certificate (cert part of the cached PEM) as the only trusted CA."""
    pem = Path(node["cert"]).read_text()
    start = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    path = tmp_path / f"{node['name']}.crt"
    path.write_text(pem[start:end] + "\n")
    return str(path)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_sushy_reads_power_and_resets(fleet: SimProcess, flavor: str, tmp_path: Path) -> None:
    import sushy

    node = fleet.node(flavor)
    # Our own auth object, closed (session DELETEd) while the simulator is up. Leaving the logout to
    # ``Sushy.__del__`` ran it whenever the garbage collector found the object's cycles: in a later test, against a
    # closed port, with sushy's ten blocking retries stalling that test's event loop (a flaky sim test).
    auth = sushy.auth.SessionOrBasicAuth(username=USER, password=PASSWORD)
    root = sushy.Sushy(node["url"] + "/redfish/v1", auth=auth, verify=ca_file(node, tmp_path))
    try:
        systems = [s for s in root.get_system_collection().get_members() if _has_reset(s)]
        assert systems, f"{flavor}: no ComputerSystem with a Reset action"
        system = systems[0]
        assert system.power_state == sushy.PowerState.ON
        allowed = system.get_allowed_reset_system_values()
        assert sushy.ResetType.FORCE_OFF in allowed and sushy.ResetType.ON in allowed

        def state() -> Any:
            system.refresh(force=True)
            return system.power_state

        system.reset_system(sushy.ResetType.FORCE_OFF)
        wait_for(lambda: state() == sushy.PowerState.OFF, what=f"{flavor} Off")
        system.reset_system(sushy.ResetType.ON)
        wait_for(lambda: state() == sushy.PowerState.ON, what=f"{flavor} On")
    finally:
        auth.close()


def _has_reset(system: Any) -> bool:
    try:
        system.get_allowed_reset_system_values()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("flavor", FLAVORS)
def test_dmtf_redfish_library_reads_power_and_resets(fleet: SimProcess, flavor: str, tmp_path: Path) -> None:
    import redfish

    node = fleet.node(flavor)
    client = redfish.redfish_client(base_url=node["url"], username=USER, password=PASSWORD,
                                    cafile=ca_file(node, tmp_path), timeout=30, max_retry=2)
    client.login(auth="session")
    try:
        members = client.get("/redfish/v1/Systems").dict["Members"]
        system, target = None, None
        for member in members:
            doc = client.get(member["@odata.id"]).dict
            action = doc.get("Actions", {}).get("#ComputerSystem.Reset")
            if action:
                system, target = member["@odata.id"], action["target"]
                break
        assert system and target, f"{flavor}: no ComputerSystem.Reset"
        assert client.get(system).dict["PowerState"] == "On"

        def power() -> str:
            state: str = client.get(system).dict["PowerState"]
            return state

        response = client.post(target, body={"ResetType": "ForceOff"})
        assert response.status in (200, 202, 204), response.text
        wait_for(lambda: power() == "Off", what=f"{flavor} Off")
        response = client.post(target, body={"ResetType": "On"})
        assert response.status in (200, 202, 204), response.text
        wait_for(lambda: power() == "On", what=f"{flavor} On")
        bad = client.post(target, body={"ResetType": "NoSuchReset"})
        assert bad.status == 400
    finally:
        client.logout()


@pytest.mark.skipif(shutil.which("ipmitool") is None,
                    reason="ipmitool is not installed (Debian: apt-get install ipmitool; scripts/system-deps does it)")
def test_ipmitool_powers_a_legacy_node_of_the_fleet_off_and_on(fleet: SimProcess) -> None:
    node = fleet.node("legacy-ipmi")
    assert node["url"] == f"ipmi://{node['address']}:{fleet.ipmi_port}" and node["fingerprint"] is None
    row = next(r for r in fleet.rows if r["name"] == node["name"])
    assert row["flavor"] == "legacy-ipmi" and row["bmc_url"] == node["url"]

    def ipmitool(*args: str) -> str:
        cmd = ["ipmitool", "-I", "lanplus", "-H", node["address"], "-p", str(fleet.ipmi_port), "-U", USER,
               "-P", PASSWORD, "-N", "1", "-R", "2", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    assert ipmitool("chassis", "power", "status") == "Chassis Power is on"
    ipmitool("chassis", "power", "off")
    assert ipmitool("chassis", "power", "status") == "Chassis Power is off"
    assert "Power off/down" in ipmitool("sel", "list")
    ipmitool("chassis", "power", "on")
    assert ipmitool("chassis", "power", "status") == "Chassis Power is on"
