"""legacy-ipmi flavor: Debian's ipmitool and pyghmi's client against simulated IPMI-only BMCs (127.12.1.0/24)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import tracemalloc

import pytest

from redfleet.sim import ipmi
from redfleet.sim.ipmi import IpmiFleet, IpmiFleetThread, IpmiNodeSettings, address_range

BASE = "127.12.1.1"
TIME_SCALE = 200.0  # boot delay 90 s -> 0.45 s, power-cycle off time 2 s -> 10 ms

IPMITOOL = shutil.which("ipmitool")
needs_ipmitool = pytest.mark.skipif(
    IPMITOOL is None, reason="ipmitool is not installed (Debian: apt-get install ipmitool; scripts/system-deps does it)"
)


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sim():
    addresses = address_range(BASE, 4)
    port = free_udp_port(BASE)
    settings = IpmiNodeSettings(seed=7, session_limit=4)
    with IpmiFleetThread(addresses, port=port, settings=settings, time_scale=TIME_SCALE) as fleet:
        yield fleet


def ipmitool(fleet: IpmiFleet, node: int, *args: str, password: str = "calvin", user: str = "root",
             check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    assert IPMITOOL is not None
    cmd = [IPMITOOL, "-I", "lanplus", "-H", fleet.nodes[node].address, "-p", str(fleet.port), "-U", user,
           "-P", password, "-N", "1", "-R", "2", *extra, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@needs_ipmitool
def test_ipmitool_power_off_on_cycle(sim):
    assert ipmitool(sim, 0, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    assert "Down/Off" in ipmitool(sim, 0, "chassis", "power", "off").stdout
    assert ipmitool(sim, 0, "chassis", "power", "status").stdout.strip() == "Chassis Power is off"
    # another node is not affected
    assert ipmitool(sim, 1, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    # cycle is refused while off, as IPMI 28.3 allows and real BMCs do
    refused = ipmitool(sim, 0, "chassis", "power", "cycle", check=False)
    assert "not supported in present state" in refused.stdout + refused.stderr
    assert "Up/On" in ipmitool(sim, 0, "chassis", "power", "on").stdout
    assert ipmitool(sim, 0, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    node = sim.nodes[0]
    wait_for(lambda: node.os_state == ipmi.OS_UP)
    assert "Cycle" in ipmitool(sim, 0, "chassis", "power", "cycle").stdout
    wait_for(lambda: node.power_state == "On" and node.os_state == ipmi.OS_UP)
    sel = ipmitool(sim, 0, "sel", "list").stdout
    for text in ("Power off/down", "Initiated by power up", "C: boot completed", "Power cycle"):
        assert text in sel, sel
    status = ipmitool(sim, 0, "chassis", "status").stdout
    assert "System Power         : on" in status


@needs_ipmitool
def test_ipmitool_soft_off_and_reset(sim):
    node = sim.nodes[2]
    wait_for(lambda: node.os_state == ipmi.OS_UP)
    ipmitool(sim, 2, "chassis", "power", "soft")
    wait_for(lambda: node.power_state == "Off")  # OS shuts down, then power goes off
    ipmitool(sim, 2, "chassis", "power", "on")
    ipmitool(sim, 2, "chassis", "power", "reset")
    assert "Initiated by hard reset" in ipmitool(sim, 2, "sel", "list").stdout


@needs_ipmitool
def test_ipmitool_sensors_sdr_fru(sim):
    sdr = ipmitool(sim, 1, "sdr").stdout
    for name in ("Inlet Temp", "CPU1 Temp", "FAN1", "12V", "Pwr Consumption", "PS1 Status"):
        assert name in sdr
    assert "degrees C" in sdr and "RPM" in sdr and "Watts" in sdr
    sensors = ipmitool(sim, 1, "sensor", "list").stdout
    inlet = next(line for line in sensors.splitlines() if line.startswith("Inlet Temp"))
    cells = [c.strip() for c in inlet.split("|")]
    assert cells[2] == "degrees C" and cells[3] == "ok" and 15.0 < float(cells[1]) < 40.0
    assert cells[8] == "42.000"  # upper critical threshold
    fru = ipmitool(sim, 1, "fru").stdout
    assert f"Product Serial        : {sim.nodes[1].serial}" in fru
    mc = ipmitool(sim, 1, "mc", "info").stdout
    assert "IPMI Version              : 2.0" in mc and "Manufacturer ID           : 10876" in mc
    lan = ipmitool(sim, 1, "lan", "print", "1").stdout
    assert f"IP Address              : {sim.nodes[1].address}" in lan
    power = ipmitool(sim, 1, "dcmi", "power", "reading").stdout
    assert "Instantaneous power reading" in power


@needs_ipmitool
def test_ipmitool_authentication(sim):
    for suite in ("3", "17"):
        ipmitool(sim, 3, "chassis", "power", "status", extra=("-C", suite))
    started = time.monotonic()
    bad = ipmitool(sim, 3, "chassis", "power", "status", password="wrong", check=False)
    assert bad.returncode != 0 and "Unable to establish" in bad.stderr
    unknown = ipmitool(sim, 3, "chassis", "power", "status", user="nobody", check=False)
    assert unknown.returncode != 0
    assert time.monotonic() - started < 10, "a real BMC rejects at once; the client must not time out"
    unsupported = ipmitool(sim, 3, "chassis", "power", "status", extra=("-C", "1"), check=False)
    assert unsupported.returncode != 0


@needs_ipmitool
def test_ipmitool_fan_fault_shows_in_sensors_sel_and_chassis(sim):
    node = sim.nodes[3]
    node.inject("fan", target=1)  # 0-based as the fault engine counts: FAN2
    try:
        sensors = ipmitool(sim, 3, "sensor", "list").stdout
        fan2 = next(line for line in sensors.splitlines() if line.startswith("FAN2"))
        assert "| 0.000" in fan2 and ("| nr" in fan2 or "| cr" in fan2), fan2
        assert "Cooling/Fan Fault    : true" in ipmitool(sim, 3, "chassis", "status").stdout
        assert "Lower Critical going low" in ipmitool(sim, 3, "sel", "list").stdout
    finally:
        node.clear()
    assert "Cooling/Fan Fault    : false" in ipmitool(sim, 3, "chassis", "status").stdout
    with pytest.raises(ValueError, match="xid"):
        node.inject("xid")


@needs_ipmitool
def test_bmc_cold_reset_makes_it_silent_for_a_while(sim):
    node = sim.nodes[1]
    ipmitool(sim, 1, "mc", "reset", "cold")
    assert node.down_until > time.monotonic()
    wait_for(lambda: time.monotonic() > node.down_until)
    assert "Chassis Power is" in ipmitool(sim, 1, "chassis", "power", "status").stdout


def test_pyghmi_client_round_trip(sim):
    from pyghmi.exceptions import IpmiException
    from pyghmi.ipmi import command

    node = sim.nodes[1]
    client = command.Command(bmc=node.address, userid="root", password="calvin", port=sim.port)
    try:
        assert client.get_power()["powerstate"] == "on"
        assert client.set_power("off", wait=True)["powerstate"] == "off"
        assert node.power_state == "Off"
        assert client.set_power("on", wait=True)["powerstate"] == "on"
        readings = {r.name: r for r in client.get_sensor_data()}
        assert readings["Inlet Temp"].units == "°C" and readings["Inlet Temp"].value > 10
        assert readings["FAN1"].units == "RPM"
        assert readings["PS1 Status"].states == ["Present"]
        inventory = client.get_inventory_of_component("System")
        assert inventory["Serial Number"] == node.serial
        assert inventory["UUID"].lower() == str(node.uuid)
        events = list(client.get_event_log())
        assert any(e.get("event") == "Power off" for e in events)
        client.set_bootdev("network")
        assert client.get_bootdev()["bootdev"] == "network"
    finally:
        client.ipmi_session.logout()
    with pytest.raises(IpmiException):
        command.Command(bmc=sim.nodes[0].address, userid="root", password="not-it", port=sim.port)


def test_pyghmi_falls_back_to_suite_3_on_a_suite_3_only_bmc():
    from pyghmi.ipmi import command

    address = "127.12.1.20"
    port = free_udp_port(address)
    settings = IpmiNodeSettings(cipher_suites=(3,))
    with IpmiFleetThread([address], port=port, settings=settings) as fleet:
        client = command.Command(bmc=address, userid="root", password="calvin", port=port)
        try:
            assert client.get_power()["powerstate"] == "on"
        finally:
            client.ipmi_session.logout()
        wait_for(lambda: fleet.nodes[0].sessions is None)  # logout closed the session on the BMC too


@needs_ipmitool
def test_session_limit_answers_insufficient_resources():
    from pyghmi.ipmi import command

    address = "127.12.1.30"
    port = free_udp_port(address)
    with IpmiFleetThread([address], port=port, settings=IpmiNodeSettings(session_limit=1)) as fleet:
        holder = command.Command(bmc=address, userid="root", password="calvin", port=port)
        try:
            assert holder.get_power()["powerstate"] == "on"
            busy = ipmitool(fleet, 0, "chassis", "power", "status", check=False)
            assert busy.returncode != 0 and "insufficient resources" in busy.stderr.lower()
        finally:
            holder.ipmi_session.logout()
        assert "Chassis Power is on" in ipmitool(fleet, 0, "chassis", "power", "status").stdout


def test_sensors_move_and_follow_power_deterministically():
    settings = IpmiNodeSettings(seed=3)
    fleet_a = IpmiFleet(["127.12.1.40"], settings=settings)
    fleet_b = IpmiFleet(["127.12.1.40"], settings=settings)
    node, twin = fleet_a.nodes[0], fleet_b.nodes[0]
    cpu = ipmi.SENSOR_BY_NAME["CPU1 Temp"]
    fan = ipmi.SENSOR_BY_NAME["FAN1"]
    series = [node.reading(cpu, t) for t in range(0, 1800, 60)]
    assert series == [twin.reading(cpu, t) for t in range(0, 1800, 60)]  # same seed, same readings
    assert len({round(v or 0, 1) for v in series}) > 10  # it moves
    other = IpmiFleet(["127.12.1.41"], settings=IpmiNodeSettings(seed=4)).nodes[0]
    assert [other.reading(cpu, t) for t in range(0, 1800, 60)] != series
    hot = node.reading(ipmi.SENSOR_BY_NAME["Exhaust Temp"], 10.0)
    node.clock = type("C", (), {"now": lambda self: 10.0, "epoch": lambda self, t=None: 0})()
    node.power_off()
    assert node.reading(fan, 20.0) is None and node.reading(cpu, 20.0) is None  # no reading with the host off
    cold = node.reading(ipmi.SENSOR_BY_NAME["Exhaust Temp"], 2000.0)
    assert hot is not None and cold is not None and cold < hot


def test_per_node_memory_is_small():
    addresses = address_range("127.12.8.1", 2000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fleet = IpmiFleet(addresses)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_node = (after - before) / len(fleet.nodes)
    assert per_node < 2048, f"{per_node:.0f} bytes per legacy-ipmi node"


async def test_many_nodes_share_one_loop():
    addresses = address_range("127.12.4.1", 300)
    async with IpmiFleet(addresses, port=0) as fleet:  # 0: one free UDP port on every address
        port = fleet.port
        assert port != 0 and len(fleet.nodes) == 300
        assert fleet.url(fleet.nodes[-1]) == f"ipmi://127.12.5.44:{port}"
        if IPMITOOL is not None:
            import asyncio

            async def status(i: int) -> str:
                proc = await asyncio.create_subprocess_exec(
                    IPMITOOL, "-I", "lanplus", "-H", addresses[i], "-p", str(port), "-U", "root", "-P", "calvin",
                    "chassis", "power", "status", stdout=asyncio.subprocess.PIPE)
                out, _ = await proc.communicate()
                return out.decode().strip()

            results = await asyncio.gather(*(status(i) for i in range(0, 300, 10)))
            assert results == ["Chassis Power is on"] * 30


def test_psu_fault_sets_failure_state_and_sel_then_clears():
    node = IpmiFleet(["127.12.1.50"]).nodes[0]
    assert node.sensor_reading(0x40) == bytes([0x00, 0xC0, 0x01, 0x80])  # PS1: presence detected
    before = len(node.sel_entries())
    node.inject("psu", target=0)
    assert node.sensor_reading(0x40)[2] == 0x03  # presence + failure detected
    assert node.sensor_reading(0x41)[2] == 0x01  # PS2 unaffected
    assert node._chassis_status(b"")[0] & 0x08  # main power fault
    entries = node.sel_entries()
    assert len(entries) == before + 1 and entries[-1][10] == ipmi.rec.SENSOR_POWER_SUPPLY
    node.clear()
    assert node.sensor_reading(0x40)[2] == 0x01
    assert node.sel_entries()[-1][12] & 0x80  # deassertion logged
    assert node.power_state == "On"  # one PSU of two lost: the host keeps running
