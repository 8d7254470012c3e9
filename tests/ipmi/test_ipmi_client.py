"""IPMI fallback against the simulator's legacy-ipmi node: power, sensors, errors, no leaked sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from redfleet.ipmi import IpmiClient
from redfleet.redfish.errors import ActionNotSupported, RequestTimeout


@pytest.fixture
def ipmi_node() -> Iterator[str]:
    try:
        from redfleet.sim.ipmi import IpmiFleetThread
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"IPMI simulator unavailable: {exc}")
    sim = IpmiFleetThread(["127.13.22.1"], port=16231)
    sim.start()
    try:
        yield "ipmi://127.13.22.1:16231"
    finally:
        sim.stop()


async def test_power_and_sensors(ipmi_node: str) -> None:
    async with IpmiClient.from_url(ipmi_node, "root", "calvin", timeout=10) as c:
        assert await c.power_status() == "On"
        await c.power("off", actor="bob", reason="test")
        await asyncio.sleep(0.3)
        assert await c.power_status() == "Off"
        await c.power("on")
        sr = await c.sensors()
        assert sr.via == "ipmi" and sr.readings
        assert any(r.kind == "temperature" and r.units == "Cel" and r.value is not None for r in sr.readings)
        assert any(r.kind == "fan" for r in sr.readings)
        with pytest.raises(ActionNotSupported):
            await c.power("explode")
    # a second client for the same BMC works (no stale pyghmi session reused)
    async with IpmiClient.from_url(ipmi_node, "root", "calvin", timeout=10) as c:
        assert await c.power_status() in ("On", "Off")


async def test_dead_bmc_times_out() -> None:
    with pytest.raises(RequestTimeout):
        async with IpmiClient("127.13.22.99", "root", "calvin", port=16239, timeout=1.5):
            pass


def test_url_parsing() -> None:
    c = IpmiClient.from_url("ipmi://admin:s%40cret@10.1.2.3:6230", None, None)
    assert (c.host, c.port, c.username, c.password) == ("10.1.2.3", 6230, "admin", "s@cret")
    assert IpmiClient.from_url("ipmi://h", "u", "p").port == 623
    with pytest.raises(ValueError):
        IpmiClient.from_url("https://h", "u", "p")
