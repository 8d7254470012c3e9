"""The dynamic side claims only the URIs it answers itself, so every other plain GET takes the core's fast path."""

from __future__ import annotations

from redfleet.sim import SimConfig, SimFleet


async def test_dynamics_take_only_events_uris(mockups, tmp_path):
    cfg = SimConfig(mix={"dell": 1, "hpe": 1}, port=0, http=True, base_address="127.11.210.1", cache_dir=tmp_path)
    async with SimFleet(cfg) as fleet:
        for info in fleet.nodes:
            dyn = fleet.node(info.name).dyn
            ix = dyn.flv.ix
            assert not dyn.takes("GET", "/redfish/v1")
            assert not dyn.takes("GET", ix.system)
            assert dyn.takes("GET", ix.subscriptions + "/1")
            if ix.sse_uri:  # iDRAC has an SSE stream, iLO 5 has none
                assert dyn.takes("GET", ix.sse_uri)
            fleet.dynamics.inject(info.name, "bad-json")
            # the core serves bad-json itself on both paths, so the fault does not push GETs off the fast path
            assert not dyn.takes("GET", ix.system)
        assert sum(1 for n in fleet.nodes if fleet.node(n.name).dyn.flv.ix.sse_uri) == 1
