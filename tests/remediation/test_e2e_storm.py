"""A fault storm on 30% of the fleet (real Slurm, simulator): the circuit breaker trips, automation pauses, and no
more nodes than the cap are ever touched — a shared cause must not become a mass power cycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from redfleet.remediation.wlm.slurm import parse_node_line
from redfleet.remediation.wlm.slurmctl import LocalSlurm
from remediation.harness import Harness, fast_policy, local_slurm, slurm_harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

MIX = {"supermicro": 10, "dgx": 10}
NAMES = [f"node-{i:05d}" for i in range(1, 21)]
CAP = 2
POLICY = fast_policy(safety={"max_concurrent": CAP, "max_concurrent_percent": 100, "max_per_rack": 20,
                             "breaker": {"unhealthy_percent": 10, "window": "5m", "min_nodes": 3}})


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    with local_slurm(NAMES, registered=[]) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("remediation-storm")
    async with slurm_harness(tmp, slurm, mix=MIX, base_address="127.23.0.1", host="127.23.1.1", policy=POLICY) as hh:
        yield hh


def drained_by_us(slurm: LocalSlurm) -> list[str]:
    out = []
    for n in NAMES:
        f = parse_node_line(slurm.scontrol("show", "node", "-o", n).stdout.strip())
        if "DRAIN" in f.get("State", "") and f.get("Reason", "").startswith("redfleet:"):
            out.append(n)
    return out


async def test_storm_trips_the_breaker_and_touches_no_more_than_the_cap(h: Harness, slurm: LocalSlurm) -> None:
    storm = NAMES[::3][:6]  # 6 of 20 nodes, both flavors
    most_open = 0
    for n in storm:
        h.inject(n, "xid", gpu=0, xid=79)
    for _ in range(150):
        most_open = max(most_open, len(h.controller.open))
        st = await h.get("/api/v1/remediation/status")
        if st["breaker"]["tripped"]:
            break
        await asyncio.sleep(0.1)
    assert st["breaker"]["tripped"], st
    assert "shared cause" in st["breaker"]["reason"]
    for _ in range(25):  # five more seconds: nothing new starts, nothing more is power-cycled
        most_open = max(most_open, len(h.controller.open))
        await asyncio.sleep(0.2)
    flows = await h.flows()
    touched = {f["node"] for f in flows}
    assert len(touched) <= CAP and most_open <= CAP, (touched, most_open)
    assert sum(h.power_cycles.values()) <= CAP, h.power_cycles
    assert len(drained_by_us(slurm)) <= CAP
    assert all(f["state"] == "paused" for f in flows if f["state"] not in ("succeeded", "failed")), flows
    deferred = set(h.controller.deferred)
    assert set(storm) - touched <= deferred and all("breaker" in h.controller.deferred[n]
                                                    for n in set(storm) - touched)
    audit = await h.get("/api/v1/audit")
    trip = next(a for a in audit if a["action"] == "remediation.breaker.trip")
    assert trip["details"]["count"] >= 4
    # an operator resets it: the rest are handled, still never more than the cap at once
    status, st = await h.post("/api/v1/remediation/reset-breaker")
    assert status == 200 and not st["breaker"]["tripped"]
    for _ in range(600):
        most_open = max(most_open, len(h.controller.open))
        done = [f for f in await h.flows() if f["state"] == "succeeded"]
        if len({f["node"] for f in done}) == len(storm):
            break
        await asyncio.sleep(0.2)
    assert {f["node"] for f in done} == set(storm)
    assert most_open <= CAP
    assert all(h.power_cycles.get(n) == 1 for n in storm), h.power_cycles
    assert drained_by_us(slurm) == []
