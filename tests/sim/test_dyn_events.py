"""Redfish events: push subscriptions to a local receiver, loopback-only destinations, SSE where it exists."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from redfleet.sim.dyn_node import FleetDyn
from redfleet.sim.events import loopback_destination
from redfleet.sim.fleet import SimConfig, SimFleet

pytestmark = pytest.mark.usefixtures("mockups")

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:calvin").decode()}


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=6, http=True, port=0, base_address="127.11.3.1", seed=5, time_scale=400.0)
    async with SimFleet(cfg) as f:
        yield f


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def take(request: web.Request) -> web.Response:
        await got.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/events", got
    await runner.cleanup()


def by_flavor(fleet: SimFleet, flavor: str) -> Any:
    return fleet.node(next(n.name for n in fleet.nodes if n.flavor == flavor))


def test_loopback_rule() -> None:
    assert loopback_destination("http://127.0.0.1:9000/x") is None
    assert loopback_destination("https://127.200.3.4/events") is None
    assert loopback_destination("http://localhost:80/") is None
    assert loopback_destination("http://[::1]:8080/") is None
    assert "loopback" in (loopback_destination("http://10.0.0.5/events") or "")
    assert "loopback" in (loopback_destination("https://example.com/events") or "")
    assert loopback_destination("ftp://127.0.0.1/") is not None


@pytest.mark.parametrize("flavor", ["dell", "hpe", "supermicro", "dgx"])
async def test_push_subscription_delivers_fault_and_power_events(
        fleet: SimFleet, receiver: tuple[str, asyncio.Queue[dict[str, Any]]], flavor: str) -> None:
    url, got = receiver
    node = by_flavor(fleet, flavor)
    fd = fleet.dynamics
    assert isinstance(fd, FleetDyn)
    coll = fd.nodes[node.name].flv.ix.subscriptions
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        # a fresh BMC has no subscriptions (the captured ones are not served)
        async with s.get(base + coll) as r:
            assert (await r.json())["Members"] == []
        async with s.post(base + coll, json={"Destination": url, "Context": "ctx-1", "Protocol": "Redfish"}) as r:
            assert r.status == 201, await r.text()
            loc = r.headers["Location"]
            sub = await r.json()
        assert sub["Destination"] == url and sub["Context"] == "ctx-1"
        async with s.get(base + coll) as r:
            assert [m["@odata.id"] for m in (await r.json())["Members"]] == [loc]
        async with s.get(base + loc) as r:
            assert (await r.json())["Id"] == sub["Id"]
        fd.inject(node.name, "psu" if flavor != "dgx" else "ecc-dbe", target=0)
        ev = await asyncio.wait_for(got.get(), 5)
        assert ev["Context"] == "ctx-1" and ev["Events"]
        rec = ev["Events"][0]
        assert rec["Severity"] in ("Critical", "Warning") and rec["Message"]
        assert "EventTimestamp" in rec and "MessageId" in rec
        # power events too
        while not got.empty():
            got.get_nowait()
        node.reset("ForceOff")
        seen: list[str] = []
        while not any("off" in m.lower() for m in seen):
            msg = await asyncio.wait_for(got.get(), 5)
            seen.extend(e["Message"] for e in msg["Events"])
        async with s.delete(base + loc) as r:
            assert r.status in (200, 204)
        async with s.get(base + loc) as r:
            assert r.status == 404
        async with s.get(base + coll) as r:
            assert (await r.json())["Members"] == []


async def test_non_loopback_destination_is_refused(fleet: SimFleet) -> None:
    node = by_flavor(fleet, "openbmc")
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.post(base + "/redfish/v1/EventService/Subscriptions",
                          json={"Destination": "https://10.1.2.3/events", "Protocol": "Redfish"}) as r:
            assert r.status == 400
            body = await r.json()
        info = body["error"]["@Message.ExtendedInfo"][0]
        assert info["MessageId"].endswith("PropertyValueFormatError") and "loopback" in info["Message"]
        async with s.post(base + "/redfish/v1/EventService/Subscriptions", json={"Protocol": "Redfish"}) as r:
            assert r.status == 400


async def test_delivery_gives_up_on_a_dead_destination(fleet: SimFleet) -> None:
    node = by_flavor(fleet, "ami")
    fd = fleet.dynamics
    assert isinstance(fd, FleetDyn)
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.post(base + "/redfish/v1/EventService/Subscriptions",
                          json={"Destination": "http://127.0.0.1:9/nothing", "Protocol": "Redfish"}) as r:
            assert r.status == 201
    assert fd.events is not None
    fd.inject(node.name, "psu")
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*list(fd.events._tasks)), 10)  # retries are bounded
    assert fd.events.failed >= 1


@pytest.mark.parametrize(("flavor", "uri"), [("dell", "/redfish/v1/SSE"),
                                             ("openbmc", "/redfish/v1/EventService/SSE"),
                                             ("dgx", "/redfish/v1/EventService/SSE")])
async def test_sse_stream_delivers_events(fleet: SimFleet, flavor: str, uri: str) -> None:
    node = by_flavor(fleet, flavor)
    fd = fleet.dynamics
    assert isinstance(fd, FleetDyn)
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(base + uri) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            kind = "fan" if flavor != "dgx" else "gpu-overtemp"
            if flavor == "openbmc":
                kind = "os-hang"
            fd.inject(node.name, kind)
            data = None
            while data is None:
                line = await asyncio.wait_for(r.content.readline(), 5)
                if line.startswith(b"data: "):
                    data = json.loads(line[6:])
            assert data["Events"][0]["Message"]


async def test_no_sse_where_the_real_bmc_has_none(fleet: SimFleet) -> None:
    node = by_flavor(fleet, "supermicro")
    base = fleet.info(node).bmc_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(base + "/redfish/v1/EventService/SSE") as r:
            assert r.status == 404
