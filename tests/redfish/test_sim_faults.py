"""The same per-node fault handling against the simulator's own fault engine (sim-dyn): a fleet with a BMC down,
throttled, slow, refusing sessions, sending malformed JSON and changing its certificate — every node gets a clear,
classified result and the healthy ones complete."""

from __future__ import annotations

import pytest

from redfleet.redfish import RetryPolicy, Timeouts, collect_inventory
from redfleet.redfish.fleet import FleetOptions, run_fleet, targets_from_fleet
from redfleet.redfish.tls import MemoryPinStore

FAULTS = {
    "node-00002": ("bmc-down", {}),
    "node-00003": ("bmc-throttle", {"status": 503, "fraction": 1.0}),
    "node-00004": ("bmc-slow", {"latency": "const:3000ms"}),
    "node-00005": ("bad-json", {"fraction": 1.0}),
    "node-00006": ("cert-change", {}),
    "node-00007": ("session-refuse", {}),
}
EXPECTED = {"node-00002": "unreachable", "node-00003": "throttled", "node-00004": "timeout",
            "node-00005": "malformed", "node-00006": "certificate-changed"}


async def test_fleet_faults_from_the_simulator(tmp_path) -> None:
    try:
        from redfleet.sim import SimConfig, SimFleet
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"simulator not importable: {exc}")
    cfg = SimConfig(mix={"dell": 4, "supermicro": 4}, port=0, http=False, base_address="127.13.160.1", seed=3,
                    cache_dir=tmp_path / "certs")
    async with SimFleet(cfg) as fleet:
        dyn = getattr(fleet, "dynamics", None)
        if dyn is None or not hasattr(dyn, "inject"):
            pytest.skip("simulator fault engine not available")
        targets = targets_from_fleet(fleet.fleet_file())
        pins = MemoryPinStore()
        for node in fleet.nodes:  # pinned in advance, as an operator's inventory would have them
            if node.cert_fingerprint:
                pins.put(node.bmc_url, node.cert_fingerprint)
        for name, (kind, params) in FAULTS.items():
            dyn.inject(name, kind, params=params)
        opts = FleetOptions(tls_mode="pin", pin_store=pins, timeouts=Timeouts.uniform(1.0),
                            retry=RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.05, retry_after_max=2))
        results = await run_fleet(targets, collect_inventory, options=opts)
    by = {r.name: r for r in results}
    for name, kind in EXPECTED.items():
        assert not by[name].ok, name
        assert by[name].error_dict()["kind"] == kind, (name, by[name].error)  # type: ignore[index]
    # sessions refused: Basic auth fallback keeps the node readable (auth="auto")
    refused = by["node-00007"]
    assert refused.ok and refused.value.bmc.auth == "basic"  # type: ignore[union-attr]
    healthy = [r for r in results if r.name not in FAULTS]
    assert healthy and all(r.ok for r in healthy)
    for r in [*healthy, refused]:
        inv = r.value
        assert inv is not None
        expected_gpus = 1 if inv.bmc.vendor == "Dell" else 8
        assert len(inv.gpus) == expected_gpus
