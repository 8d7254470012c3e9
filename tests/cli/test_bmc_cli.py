"""``redfleet inventory`` / ``power`` / ``sensors`` end to end against mock BMCs (and the IPMI simulator)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from redfleet.cli.main import app
from redfleet.paths import mockups_dir
from redfleet.redfish.testing import MockupBMC, MockupTree, self_signed_cert

pytestmark = pytest.mark.skipif(not (mockups_dir() / "supermicro").is_dir(), reason="mockups missing")

runner = CliRunner()


class BMCThread:
    """Mock BMCs served from a background event loop (the CLI runs its own loop in the test thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bmcs: list[MockupBMC] = []

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def add(self, tree: str, address: str, **kw: Any) -> MockupBMC:
        bmc = MockupBMC(MockupTree(mockups_dir() / tree), address=address, **kw)
        self.call(bmc.start())
        self.bmcs.append(bmc)
        return bmc

    def stop(self) -> None:
        for b in self.bmcs:
            self.call(b.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def bmcs() -> Iterator[BMCThread]:
    t = BMCThread()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture(autouse=True)
def _pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDFLEET_PINS", str(tmp_path / "pins.json"))
    monkeypatch.delenv("REDFLEET_USER", raising=False)
    monkeypatch.delenv("REDFLEET_PASSWORD", raising=False)


def test_inventory_one_bmc_json(bmcs: BMCThread) -> None:
    bmc = bmcs.add("supermicro", "127.13.20.1")
    res = runner.invoke(app, ["inventory", bmc.url, "-u", "root", "-p", "calvin", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert list(data) == ["bmc", "systems", "cpus", "gpus", "memory", "drives", "nics", "psus", "fans", "firmware"]
    assert len(data["gpus"]) == 8
    for g in data["gpus"]:
        assert {"id", "model", "serial", "location", "health", "source"} <= set(g)
    s = data["systems"][0]
    assert {"id", "manufacturer", "model", "serial", "power_state", "bios_version"} <= set(s)
    assert all({"name", "version"} <= set(f) for f in data["firmware"])
    assert not bmc.sessions


def test_inventory_table_for_people(bmcs: BMCThread, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import redfleet.cli.bmc as bmc_cli

    monkeypatch.setattr(bmc_cli, "out", Console(width=200))
    bmc = bmcs.add("dell", "127.13.20.2")
    res = runner.invoke(app, ["inventory", bmc.url, "-u", "root", "-p", "calvin"])
    assert res.exit_code == 0, res.output
    assert "GPUs (1)" in res.stdout and "NVIDIA H100 PCIe" in res.stdout and "PowerEdge R750" in res.stdout


def test_inventory_fleet_reports_each_failure(bmcs: BMCThread, tmp_path: Path) -> None:
    ok = bmcs.add("dell", "127.13.20.3")
    bad = bmcs.add("supermicro", "127.13.20.4")
    bad.faults.bad_json = True
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "credentials:\n  lab: {username: root, password: calvin}\nnodes:\n"
        f"  - {{name: good, bmc_url: '{ok.url}', credential: lab}}\n"
        f"  - {{name: broken, bmc_url: '{bad.url}', credential: lab}}\n"
        "  - {name: gone, bmc_url: 'http://127.13.20.250:9', credential: lab}\n"
    )
    res = runner.invoke(app, ["inventory", "--fleet", str(fleet), "--json", "--timeout", "2"])
    assert res.exit_code == 1
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["good"]["ok"] and len(rows["good"]["inventory"]["gpus"]) == 1
    assert rows["broken"]["error"]["kind"] == "malformed"
    assert rows["gone"]["error"]["kind"] == "unreachable"
    assert "broken" in res.stderr and "gone" in res.stderr and "2 of 3 node(s) failed" in res.stderr
    table = runner.invoke(app, ["inventory", "--fleet", str(fleet), "--timeout", "2"])
    assert table.exit_code == 1 and "good" in table.stdout and "[malformed]" in table.stdout


def test_insecure_and_pin_exclusive() -> None:
    res = runner.invoke(app, ["inventory", "https://127.13.20.9", "-u", "a", "-p", "b", "--insecure", "--pin"])
    assert res.exit_code == 2


def test_power_and_sensors(bmcs: BMCThread, caplog: pytest.LogCaptureFixture) -> None:
    bmc = bmcs.add("dell", "127.13.20.5")
    res = runner.invoke(app, ["power", "status", bmc.url, "-u", "root", "-p", "calvin", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["state"] == "On"
    res = runner.invoke(app, ["power", "off", bmc.url, "-u", "root", "-p", "calvin", "--reason", "swap DIMM",
                              "--actor", "alice"])
    assert res.exit_code == 0, res.output
    assert ("/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset", {"ResetType": "ForceOff"}) \
        in bmc.posts
    audit = [r for r in caplog.records if r.name == "redfleet.audit"]
    assert audit and audit[-1].audit["who"] == "alice" and audit[-1].audit["why"] == "swap DIMM"  # type: ignore[attr-defined]
    res = runner.invoke(app, ["power", "status", bmc.url, "-u", "root", "-p", "calvin", "--json"])
    assert json.loads(res.stdout)[0]["state"] == "Off"
    res = runner.invoke(app, ["power", "explode", bmc.url])
    assert res.exit_code == 2
    res = runner.invoke(app, ["sensors", bmc.url, "-u", "root", "-p", "calvin", "--json", "--kind", "temperature"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["readings"] and all(r["kind"] == "temperature" for r in data["readings"])


def test_pin_then_certificate_change(bmcs: BMCThread, tmp_path: Path) -> None:
    a, b = self_signed_cert(tmp_path), self_signed_cert(tmp_path)
    bmc = bmcs.add("dell", "127.13.20.6", tls_cert=a)
    args = ["power", "status", bmc.url, "-u", "root", "-p", "calvin", "--pin"]
    assert runner.invoke(app, args).exit_code == 0  # trust on first use
    bmcs.call(bmc.rotate_certificate(b))
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "certificate changed" in res.output and "--accept-new-cert" in res.output
    assert runner.invoke(app, [*args, "--accept-new-cert"]).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0  # the new pin is kept
    # without --pin the self-signed certificate is not trusted at all
    res = runner.invoke(app, ["power", "status", bmc.url, "-u", "root", "-p", "calvin"])
    assert res.exit_code == 1 and "[tls]" in res.output


def test_ipmi_target_power_and_sensors() -> None:
    try:
        from redfleet.sim.ipmi import IpmiFleetThread
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"IPMI simulator unavailable: {exc}")
    sim = IpmiFleetThread(["127.13.21.1"], port=16230)
    sim.start()
    try:
        url = "ipmi://127.13.21.1:16230"
        res = runner.invoke(app, ["power", "status", url, "-u", "root", "-p", "calvin", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[0]["state"] in ("On", "Off")
        res = runner.invoke(app, ["sensors", url, "-u", "root", "-p", "calvin", "--json"])
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        assert data["via"] == "ipmi" and any(r["kind"] == "temperature" for r in data["readings"])
        res = runner.invoke(app, ["inventory", url, "-u", "root", "-p", "calvin"])
        assert res.exit_code == 2  # inventory needs Redfish: said clearly
    finally:
        sim.stop()


def test_inventory_fleet_with_worker_processes(bmcs: BMCThread, tmp_path: Path) -> None:
    a = bmcs.add("dell", "127.13.20.7")
    b = bmcs.add("supermicro", "127.13.20.8")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "credentials:\n  lab: {username: root, password: calvin}\nnodes:\n"
        f"  - {{name: a, bmc_url: '{a.url}', credential: lab}}\n"
        f"  - {{name: b, bmc_url: '{b.url}', credential: lab}}\n"
    )
    res = runner.invoke(app, ["inventory", "--fleet", str(fleet), "--json", "--workers", "2", "--insecure"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert len(rows["a"]["inventory"]["gpus"]) == 1 and len(rows["b"]["inventory"]["gpus"]) == 8
