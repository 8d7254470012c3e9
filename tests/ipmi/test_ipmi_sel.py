"""IpmiClient.sel against the simulator's legacy-ipmi node: faults and power events in the SEL, newest first, in
read_sel's shape. Addresses: 127.5.0.0/16."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from redfleet.ipmi import IpmiClient
from redfleet.redfish.logs import SEL_FIELDS


@pytest.fixture
def sim() -> Iterator[Any]:
    try:
        from redfleet.sim.ipmi import IpmiFleetThread
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"IPMI simulator unavailable: {exc}")
    thread = IpmiFleetThread(["127.5.20.1"], port=16241)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


async def test_sel_newest_first_with_faults(sim: Any) -> None:
    node = sim.fleet.nodes[0]
    sim.call(lambda: node.inject("fan", fan=2))
    sim.call(lambda: node.inject("psu", psu=1))
    before = datetime.now(UTC) - timedelta(minutes=2)
    async with IpmiClient.from_url("ipmi://127.5.20.1:16241", "root", "calvin", timeout=10) as c:
        entries = await c.sel()
        two = await c.sel(limit=2)
        assert await c.sel(limit=0) == []
    assert len(entries) == 3  # "log area cleared" at start, then the two faults
    for e in entries:
        assert tuple(e) == SEL_FIELDS
        assert e["entry_type"] == "SEL" and e["log"] == "ipmi-sel"
        assert e["uri"] == f"ipmi://127.5.20.1:16241#sel/{e['id']}"
    assert [e["id"] for e in entries] == ["3", "2", "1"]
    psu, fan, cleared = entries
    assert psu["sensor_type"] == "Power Supply" and psu["sensor_number"] == 0x40
    assert psu["severity"] == "Critical" and "PS1 Status" in psu["message"] and "Failure" in psu["message"]
    assert fan["sensor_type"] == "Fan" and fan["sensor_number"] == 0x11 and "FAN2" in fan["message"]
    assert fan["message_id"] == "IPMI.04.1.2"  # sensor type Fan, threshold event, lower critical going low
    assert cleared["severity"] == "OK"
    created = datetime.fromisoformat(psu["created"].replace("Z", "+00:00"))
    assert before <= created <= datetime.now(UTC) + timedelta(minutes=2)
    assert two == entries[:2]


async def test_clear_shows_deassertion(sim: Any) -> None:
    node = sim.fleet.nodes[0]
    sim.call(lambda: node.inject("fan", fan=1))
    sim.call(node.clear)
    async with IpmiClient.from_url("ipmi://127.5.20.1:16241", "root", "calvin", timeout=10) as c:
        newest = (await c.sel(limit=1))[0]
    assert "FAN1" in newest["message"] and "deasserted" in newest["message"]
