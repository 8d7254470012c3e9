"""Engine side of the scenario tests: faults injected in the simulator (in process, no HTTP), its in-band state
turned into IngestBatches by the simulator feeder's own converter, judged by the engine on simulated time.
(``tests/e2e/test_serve_scenarios.py`` runs the same chain through ``redfleet serve``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from redfleet.agent.simfeed import NodeFeedState, batch_from_inband
from redfleet.health.testing import EngineDriver
from redfleet.model.ingest import IngestBatch
from redfleet.sim.fleet import SimConfig, SimFleet
from redfleet.sim.inband import inband_json

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimFleet]:
    cfg = SimConfig(mix={"dgx": 4, "supermicro": 2}, port=0, base_address="127.17.20.1",
                    cache_dir=tmp_path_factory.mktemp("health-sim"), seed=11)
    async with SimFleet(cfg) as f:
        yield f


class Feed:
    """One node fed to an engine: the simulator's in-band document at simulated time t -> a batch."""

    def __init__(self, fleet: SimFleet, name: str, d: EngineDriver | None = None) -> None:
        self.fleet = fleet
        self.name = name
        self.nd: Any = fleet.dynamics.node(name)  # type: ignore[union-attr]
        self.d = d or EngineDriver()
        self.st = NodeFeedState()
        self.t = self.nd.now()
        batch_from_inband(inband_json(self.nd, self.t, nvme=False), self.st, self.t)  # earlier tests' Xid lines

    def run(self, seconds: float, step: float = 1.0, bmc: bool = True) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t += step
            doc = inband_json(self.nd, self.t, nvme=True)
            b = batch_from_inband(doc, self.st, self.t)
            if b is not None:
                self.d.engine.observe_batch(IngestBatch.model_validate(b))
            self.d.engine.observe_reachability(self.name, bmc, self.t, error=None if bmc else "connect refused",
                                               power_state=self.nd.node.power_state if bmc else None)
            self.d.at(self.t)

    def inject(self, kind: str, **kw: Any) -> None:
        self.fleet.dynamics.inject(self.name, kind, **kw)  # type: ignore[union-attr]

    def clear(self) -> None:
        self.fleet.dynamics.clear(self.name, repair=False)  # type: ignore[union-attr]

    def fault_rules(self) -> set[str]:
        return self.d.rules_firing(self.name)


@pytest.mark.parametrize(("code", "action", "state"), [
    (13, "RESTART_APP", "healthy"), (31, "RESTART_APP", "healthy"), (43, None, "healthy"),
    (119, "RESET_GPU", "unhealthy"), (62, "RESET_GPU", "unhealthy"), (79, "RESTART_BM", "unhealthy"),
])
async def test_sim_xid_bucket_to_action(fleet: SimFleet, code: int, action: str | None, state: str) -> None:
    f = Feed(fleet, "node-00001")
    f.run(3)
    assert f.d.state(f.name) == "healthy" and f.fault_rules() == set()
    f.inject("xid", gpu=2, xid=code)
    try:
        f.run(15)  # past the correlation window
        r = f.d.reason(f.name, f"xid.{code}")
        if action is None:
            assert r is None
        else:
            assert r is not None and r.action == action and r.component == "gpu:2", f.d.reasons(f.name)
        assert f.d.state(f.name) == state
    finally:
        f.clear()


async def test_sim_repeated_xid_escalates(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00002")
    f.run(2)
    for _ in range(3):
        f.inject("xid", gpu=0, xid=31)
        f.run(20)
    r = f.d.reason(f.name, "xid.31", "gpu:0")
    assert (r.action, r.classification, r.severity) == ("RUN_DIAG", "suspect", "warning")
    assert r.details["count"] == 3 and f.d.state(f.name) == "degraded"
    f.clear()


async def test_sim_ecc_dbe_and_row_remap_failure(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00003")
    f.run(2)
    f.inject("ecc-dbe", gpu=1)
    f.run(15)
    rules = f.fault_rules()
    assert {"xid.48", "gpu-ecc-dbe"} <= rules, f.d.reasons(f.name)
    assert f.d.reason(f.name, "xid.48").action == "DRAIN_AND_RESET"  # 48 with 63: the catalog's workflow
    assert f.d.state(f.name) == "unhealthy"
    f.inject("row-remap", gpu=5)
    f.run(15)
    r = f.d.reason(f.name, "gpu-row-remap-failure", "gpu:5")
    assert r is not None and r.classification == "terminal" and r.action == "CONTACT_SUPPORT"
    assert f.d.reason(f.name, "xid.154", "gpu:5") is not None  # the driver's verdict rides along
    f.clear()


async def test_sim_gpu_lost_is_missing_and_needs_a_reboot(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00004")
    f.run(2)
    f.inject("gpu-lost", gpu=6)
    f.run(15)
    assert f.d.reason(f.name, "gpu-missing").component == "gpu:6"
    assert f.d.reason(f.name, "xid.79", "gpu:6").action == "RESTART_BM"
    assert f.d.engine.node_health(f.name).action == "RESTART_BM"
    f.clear()


async def test_sim_thermal_blip_vs_sustained_overtemp(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00005")
    f.run(5)
    f.inject("gpu-overtemp", gpu=3)
    f.run(10)  # a 10 s excursion
    temps = f.d.engine.series.window(f.name, "DCGM_FI_DEV_GPU_TEMP", 10, f.t, gpu=3)
    assert max(v for _, v in temps) >= 90, f"the blip must cross the H100 slowdown limit: {temps}"
    f.clear()
    f.run(120)
    assert f.d.state(f.name) == "healthy", f.d.reasons(f.name)
    assert not [c for c in f.d.changes if c.new != "healthy"], "a blip must not be in the history"
    f.inject("gpu-overtemp", gpu=3)
    f.run(60)
    r = f.d.reason(f.name, "gpu-temp-critical", "gpu:3")
    assert r is not None and f.d.state(f.name) == "unhealthy"
    f.clear()


async def test_sim_os_hang_vs_bmc_down(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00006")
    f.run(3)
    f.inject("os-hang")
    f.run(5)
    assert f.fault_rules() == {"os-hung"}
    f.clear()
    f.run(3)
    g = Feed(fleet, "node-00001")
    g.run(3)
    g.run(40, bmc=False)  # the BMC stops answering, the agent keeps reporting
    assert g.fault_rules() == {"bmc-unreachable"} and g.d.state(g.name) == "degraded"


async def test_sim_nvme_wear_out_is_terminal(fleet: SimFleet) -> None:
    f = Feed(fleet, "node-00002")
    f.run(2)
    f.inject("nvme-wear", target=0)
    f.run(3)
    reasons = {r.rule: r for r in f.d.reasons(f.name) if r.component == "nvme:nvme0"}
    assert {"nvme-critical-warning", "nvme-spare-low", "nvme-worn-out"} <= set(reasons), f.d.reasons(f.name)
    assert reasons["nvme-spare-low"].classification == "terminal"
    f.clear()
