"""The cheap ways of answering a GET give the bytes the generic ones give, for the same state and instant.

- dyn_live.py: a healthy node's Sensor documents, compiled, against dyn_overlay.sensor on the parsed document;
- expand.py: a one-level $expand of a collection of leaves, against RedfishHandler._expand_into;
- fastpath.py: the httptools fast path (now also answering query options), against the aiohttp handler;
and faults, time and the open-files limit still behave.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from redfleet.sim import SimConfig, SimFleet
from redfleet.sim import expand as expand_fast
from redfleet.sim.dyn_node import NodeDyn
from redfleet.sim.template import JSON_TYPE

pytestmark = pytest.mark.usefixtures("mockups")

MIX = {"dell": 1, "hpe": 1, "supermicro": 1, "dgx": 1, "ami": 1, "openbmc": 1}
INSTANTS = (1234.5, 86_400.0 * 3 + 17.25)
AUTH_LINE = b"Authorization: Basic " + base64.b64encode(b"root:calvin") + b"\r\n"


def _config(tmp_path: Any, base: str, **kw: Any) -> SimConfig:
    return SimConfig(mix=dict(MIX), port=0, http=True, base_address=base, cache_dir=tmp_path, seed=7, **kw)


def _freeze_wall_clock(monkeypatch: Any) -> None:
    """MetricReport timestamps follow the wall clock (to the millisecond): hold it still while comparing."""
    import datetime
    import types

    from redfleet.sim import dyn_overlay

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.datetime(2026, 12, 5, 8, 0, 0, 123456, tzinfo=tz)

    monkeypatch.setattr(dyn_overlay, "datetime", types.SimpleNamespace(
        datetime=Frozen, timedelta=datetime.timedelta, UTC=datetime.UTC))


def _sensor_paths(node: Any, kinds: tuple[str, ...] = ("Sensor",)) -> list[str]:
    return [p for p, kind in node.dyn.flv.handlers.items() if kind in kinds]


async def test_live_bytes_are_the_overlays(tmp_path, monkeypatch):
    """Every resource the dynamic side overlays, on every flavor: the bytes served (compiled, or captured for the
    overlays a healthy node leaves alone) are the overlay's."""
    _freeze_wall_clock(monkeypatch)
    async with SimFleet(_config(tmp_path, "127.11.230.1")) as fleet:
        compared = live_used = quiet = 0
        legacy: set[str] = set()
        for t in INSTANTS:
            fleet.instant = t
            for info in fleet.nodes:
                node = fleet.node(info.name)
                for path, kind in node.dyn.flv.handlers.items():
                    if kind == "Subscriptions":
                        continue  # the node's own subscriptions: not overlaid
                    if kind in ("Thermal", "Power"):
                        legacy.add(f"{info.flavor} {path}")
                    live_used += node.dyn.live_bytes(path) is not None
                    quiet += not node.dyn.watches(path)
                    fast = node.render_bytes(path)
                    with monkeypatch.context() as m:
                        m.setattr(NodeDyn, "live_bytes", lambda self, p: None)
                        m.setattr(NodeDyn, "watches", lambda self, p: p in self.flv.handlers)
                        slow = node.render_bytes(path)
                    assert fast == slow, (info.flavor, path, t)
                    compared += 1
        fleet.instant = None
    assert compared > 1500  # dgx alone has ~500 sensors
    assert live_used > 1000  # the compiled form is what serves the sensors (~550 per instant)
    assert quiet > 400  # DIMMs, drives, systems, chassis (~250 per instant)
    assert len(legacy) >= 8  # Thermal and Power of dell, hpe, supermicro, ami, openbmc


SYNTHETIC_THERMAL = {
    "@odata.id": "/redfish/v1/Chassis/X/Thermal",
    "Temperatures": [
        {"Name": "CPU1 Temp", "ReadingCelsius": 40, "UpperThresholdCritical": 41, "Status": {"Health": "OK"}},
        {"Name": "Inlet Temp", "ReadingCelsius": None, "Status": {"State": "Enabled"}},
        "not an object",
        {"Name": "Board Energy Temp", "ReadingCelsius": 30.5, "UpperThresholdNonCritical": 0, "Status": None},
        {"Name": "GPU2 Temp", "ReadingCelsius": 35.0, "RelatedItem": [{"@odata.id": "/x/GPU2"}]},
        {"Name": "DIMM Temp", "UpperThresholdFatal": 10, "Status": {"Health": "OK", "HealthRollup": "OK"}},
    ],
    "Fans": [
        {"Name": "Fan 1", "Reading": 5000, "CurrentReading": 4000, "ReadingUnits": "RPM"},
        {"Name": "Fan 2", "CurrentReading": 4100},
        {"Name": "Fan 3", "Reading": None, "CurrentReading": 4200},
        {"Name": "Fan 4", "Reading": 61, "ReadingUnits": "Percent", "CurrentReading": 60.5},
        {"Name": "Fan 5", "Reading": True},
        7,
    ],
}
SYNTHETIC_POWER = {
    "PowerControl": [{"PowerConsumedWatts": 410, "PowerMetrics": {"AverageConsumedWatts": 400.5,
                                                                   "MinConsumedWatts": 300, "MaxConsumedWatts": True}},
                     {"PowerConsumedWatts": 99.5}, "x"],
    "PowerSupplies": [{"PowerOutputWatts": 200, "PowerInputWatts": 210.25, "LastPowerOutputWatts": None}, 3],
    "Voltages": [{"Name": "12V", "ReadingVolts": 12.1}, {"ReadingVolts": True}, {"ReadingVolts": "n/a"}],
}


async def test_live_legacy_documents_every_shape(tmp_path):
    """Shapes the captures lack (CurrentReading beside Reading, null readings, odd entries) still match."""
    import copy

    import orjson

    from redfleet.sim import dyn_overlay
    from redfleet.sim.dyn_live import compile_live

    async with SimFleet(_config(tmp_path, "127.11.235.1")) as fleet:
        nd = fleet.node(fleet.nodes[0].name).dyn
        for t in INSTANTS:
            c = nd.conditions(t)
            for kind, doc, overlay in (("Thermal", SYNTHETIC_THERMAL, dyn_overlay.thermal),
                                       ("Power", SYNTHETIC_POWER, dyn_overlay.power)):
                path = f"/redfish/v1/Chassis/X/{kind}"
                live = compile_live(kind, path, doc)
                assert live is not None
                want = orjson.dumps(overlay(nd, path, copy.deepcopy(doc), t, c))
                assert live.render(nd, path, t, c) == want, kind


async def test_live_sensor_steps_aside_for_a_fault(tmp_path):
    async with SimFleet(_config(tmp_path, "127.11.231.1")) as fleet:
        name = next(n.name for n in fleet.nodes if n.flavor == "dgx")
        node = fleet.node(name)
        path = next(p for p in _sensor_paths(node) if node.dyn.live_bytes(p) is not None)
        fleet.dynamics.inject(name, "gpu-overtemp", target=0)
        assert node.dyn.live_bytes(path) is None  # the overlay answers while the node has a fault
        fleet.dynamics.clear(name)
        assert node.dyn.live_bytes(path) is not None


QUERIES = ("$expand=.($levels=1)", "$expand=*", "$expand=.", "$expand=~", "$expand=.($levels=2)",
           "$expand=.($levels=3)", "$expand=*($levels=2)", "$expand=.($levels=0)")


async def test_compiled_expand_is_the_generic_expand(tmp_path, monkeypatch):
    _freeze_wall_clock(monkeypatch)
    async with SimFleet(_config(tmp_path, "127.11.232.1")) as fleet:
        handler = fleet.handler
        assert handler is not None
        compared = shells = 0
        for t in INSTANTS:
            fleet.instant = t
            for info in fleet.nodes:
                node = fleet.node(info.name)
                for path, res in node.template.resources.items():
                    if res.ctype != JSON_TYPE:
                        continue
                    if not res.is_collection and (b'{"@odata.id":' not in res.body or hash(path) % 4):
                        continue  # a quarter of the other resources with links, to keep this test short
                    for query in QUERIES if res.is_collection else QUERIES[3:5]:
                        fast = handler.answer_get(node, path, query)
                        with monkeypatch.context() as m:
                            m.setattr(expand_fast, "compile_shell", lambda *a: None)
                            m.setattr(handler, "_shells", {})
                            slow = handler.answer_get(node, path, query)
                        if isinstance(slow, tuple):
                            assert isinstance(fast, tuple) and fast[0] == slow[0], (info.flavor, path, query, t)
                        else:  # the same error either way
                            assert not isinstance(fast, tuple) and fast.status == slow.status
                        compared += 1
        shells = sum(1 for s in handler._shells.values() if s is not None)
        fleet.instant = None
    assert compared > 500
    assert shells > 50


async def _raw_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str) -> tuple[int, dict, bytes]:
    writer.write(f"GET {url} HTTP/1.1\r\nHost: x\r\n".encode() + AUTH_LINE + b"\r\n")
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_fast_path_answers_as_aiohttp_does(tmp_path):
    urls = {
        "dell": ["/redfish/v1/Systems/System.Embedded.1", "/redfish/v1/Chassis/System.Embedded.1/Thermal",
                 "/redfish/v1/Chassis/System.Embedded.1/Sensors?$expand=.($levels=1)",
                 "/redfish/v1/Systems/System.Embedded.1/Memory?$expand=.($levels=1)",
                 "/redfish/v1/Systems?$expand=*", "/redfish/v1/Systems/System.Embedded.1?$select=PowerState,Status",
                 "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Sel/Entries?$top=2&$skip=1",
                 "/redfish/v1/Chassis?$expand=.($levels=9)", "/redfish/v1/Chassis?$expand=bogus"],
        "dgx": ["/redfish/v1/Chassis/HGX_GPU_SXM_1/Sensors?$expand=.($levels=1)",
                "/redfish/v1/Chassis/DGX/Sensors?%24expand=.(%24levels%3D1)",
                "/redfish/v1/Systems/HGX_Baseboard_0/Processors?$expand=.($levels=2)",
                "/redfish/v1/Systems/HGX_Baseboard_0/Processors/GPU_SXM_1"],
        "openbmc": ["/redfish/v1/Chassis/chassis/Thermal", "/redfish/v1/Chassis?$expand=.",
                    "/redfish/v1/Systems/system/LogServices/EventLog/Entries"],
    }
    async with SimFleet(_config(tmp_path, "127.11.233.1")) as fleet:
        fleet.instant = 4321.0  # one instant for both paths
        checked = 0
        for info in fleet.nodes:
            for url in urls.get(info.flavor, []):
                answers = []
                for fast in (True, False):
                    fleet.config.fast_path = fast  # read when a connection is accepted
                    reader, writer = await asyncio.open_connection(info.address, fleet.port)
                    answers.append(await _raw_get(reader, writer, url))
                    answers.append(await _raw_get(reader, writer, url))  # again, on the same connection
                    writer.close()
                (s1, h1, b1), (s1b, _h, b1b), (s2, h2, b2), _again = answers
                assert s1 == s2 and b1 == b2, (info.flavor, url)
                assert s1b == s1 and b1b == b1
                for key in ("content-type", "etag", "allow", "odata-version", "cache-control"):
                    assert h1.get(key) == h2.get(key), (info.flavor, url, key)
                checked += s1 == 200
        fleet.instant = None
    assert checked >= 12


async def test_fast_path_query_shows_a_fault_at_once_and_time_moves(tmp_path):
    async with SimFleet(_config(tmp_path, "127.11.234.1")) as fleet:
        info = next(n for n in fleet.nodes if n.flavor == "dgx")
        url = "/redfish/v1/Chassis/HGX_GPU_SXM_1/Sensors?$expand=.($levels=1)"
        reader, writer = await asyncio.open_connection(info.address, fleet.port)
        fleet.instant = 1000.0
        _s, _h, before = await _raw_get(reader, writer, url)
        fleet.instant = 1600.0
        _s, _h, later = await _raw_get(reader, writer, url)
        assert later != before  # live readings move with simulated time
        assert b'"Critical"' not in later
        fleet.dynamics.inject(info.name, "gpu-overtemp", target=0)
        _s, _h, hot = await _raw_get(reader, writer, url)
        assert b'"Critical"' in hot  # the very next response, same connection
        fleet.dynamics.clear(info.name)
        _s, _h, cool = await _raw_get(reader, writer, url)
        assert cool == later
        fleet.instant = None
        writer.close()


async def _raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
               body: bytes = b"") -> tuple[int, dict, bytes]:
    writer.write(head + (b"Content-Length: %d\r\n" % len(body) if body else b"") + b"\r\n" + body)
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def test_login_and_logout_keep_the_connection_on_the_fast_path(tmp_path):
    async with SimFleet(_config(tmp_path, "127.11.236.1")) as fleet:
        info = next(n for n in fleet.nodes if n.flavor == "dell")
        node = fleet.node(info.name)
        coll = node.facts.session_collection
        login = f"POST {coll} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        results = []
        for fast in (True, False):
            fleet.config.fast_path = fast
            reader, writer = await asyncio.open_connection(info.address, fleet.port)
            bad = await _raw(reader, writer, login, b'{"UserName": "root", "Password": "wrong"}')
            s, h, body = await _raw(reader, writer, login, b'{"UserName": "root", "Password": "calvin"}')
            token, location = h["x-auth-token"], h["location"]
            get = f"GET /redfish/v1/Systems/System.Embedded.1 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
            got = await _raw(reader, writer, get.encode())
            on_fast = len(fleet._fast_conns)
            out = await _raw(reader, writer, f"DELETE {location} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
                             .encode())
            after = await _raw(reader, writer, get.encode())  # the token is gone
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.05)  # the server sees the close
            doc = orjson.loads(body)
            results.append((bad[0], s, sorted(doc), doc["UserName"], got[0], out[0], after[0], on_fast,
                            sorted(k for k in h if k not in ("server", "date"))))
        (fast_r, slow_r) = results
        assert fast_r[:7] == slow_r[:7] == (401, 201, fast_r[2], "root", 200, 204, 401)
        assert fast_r[8] == slow_r[8]  # the same headers (X-Auth-Token, Location, ETag...)
        assert fast_r[7] == 1 and slow_r[7] == 0  # the fast connection was never handed over to aiohttp
        assert not node.sessions


async def test_compiled_expand_renders_a_patched_document_the_generic_way(tmp_path, monkeypatch):
    async with SimFleet(_config(tmp_path, "127.11.237.1")) as fleet:
        handler = fleet.handler
        assert handler is not None
        node = fleet.node(next(n.name for n in fleet.nodes if n.flavor == "dgx"))
        node.update_doc("/redfish/v1/Systems/DGX", {"AssetTag": "rack-7"})
        node.append_log("something happened")  # a created log entry: its collection changes, nothing else
        node.update_doc("/redfish/v1/Systems/DGX/Processors/DevType1_CPU0", {"AssetTag": "cpu-0"})
        fleet.instant = 777.0
        sel = node.entries_collection(node.facts.sel_path)
        assert node.created and sel in node.added
        for path, query, shows in (("/redfish/v1/Systems", "$expand=.($levels=2)", b"rack-7"),
                                   ("/redfish/v1/Systems", "$expand=.($levels=3)", b"cpu-0"),
                                   ("/redfish/v1/Systems/DGX/Processors", "$expand=.($levels=1)", b"cpu-0"),
                                   ("/redfish/v1/Managers", "$expand=.($levels=4)", b"")):
            fast = handler.answer_get(node, path, query)
            with monkeypatch.context() as m:
                m.setattr(expand_fast, "compile_shell", lambda *a: None)
                m.setattr(handler, "_shells", {})
                slow = handler.answer_get(node, path, query)
            assert isinstance(fast, tuple) and isinstance(slow, tuple)
            assert fast[0] == slow[0], (path, query)
            assert shows in fast[0]  # the patches show
        fleet.instant = None
        shell = handler._shells[(id(node.template), "/redfish/v1/Managers", ".", 4)]
        assert shell is not None and expand_fast.can_use(node, "/redfish/v1/Managers", shell)
