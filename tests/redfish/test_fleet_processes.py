"""run_fleet spread over worker processes: same results, in order, errors carried back with their kind."""

from __future__ import annotations

import asyncio
import threading

import pytest
from rf_helpers import MOCKUPS

from redfleet.paths import mockups_dir
from redfleet.redfish import RetryPolicy, Timeouts
from redfleet.redfish.fleet import FleetOptions, NodeTarget, run_fleet_processes
from redfleet.redfish.testing import MockupBMC, MockupTree

pytestmark = pytest.mark.skipif("dell" not in MOCKUPS, reason="mockups missing")


def test_two_worker_processes() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tree = MockupTree(mockups_dir() / "dell")
    bmcs = [MockupBMC(tree, address=f"127.13.30.{i + 1}") for i in range(4)]
    try:
        for b in bmcs:
            asyncio.run_coroutine_threadsafe(b.start(), loop).result(10)
        bmcs[2].faults.bad_json = True
        targets = [NodeTarget(f"n{i}", b.url, "root", "calvin") for i, b in enumerate(bmcs)]
        targets.append(NodeTarget("gone", "http://127.13.30.99:9", "root", "calvin"))
        opts = FleetOptions(tls_mode="insecure", timeouts=Timeouts.uniform(2),
                            retry=RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.02))
        seen: list[str] = []
        results = run_fleet_processes(targets, "redfleet.redfish.inventory.collect_inventory", options=opts,
                                      workers=2, on_result=lambda r: seen.append(r.name))
        assert [r.name for r in results] == ["n0", "n1", "n2", "n3", "gone"]
        assert sorted(seen) == sorted(r.name for r in results)
        assert [r.ok for r in results] == [True, True, False, True, False]
        assert all(len(r.value.gpus) == 1 for r in results if r.ok)  # type: ignore[union-attr]
        assert results[2].error_dict()["kind"] == "malformed"  # type: ignore[index]
        assert results[4].error_dict()["kind"] == "unreachable"  # type: ignore[index]
        assert all(not b.sessions for b in bmcs)
    finally:
        for b in bmcs:
            asyncio.run_coroutine_threadsafe(b.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
