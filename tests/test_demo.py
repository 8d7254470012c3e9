"""`redfleet demo`, small: the fleet is inventoried into the store, injected faults are noticed, and the first one
(Xid 79) is remediated automatically: power-cycled through its BMC, gated, returned."""

from __future__ import annotations

import io
import socket

from rich.console import Console

from redfleet.demo import Demo, DemoOptions
from redfleet.store.repository import FleetStore


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


async def test_demo_inventories_and_notices_faults(mockups, tmp_path):
    out = io.StringIO()
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    opts = DemoOptions(nodes=6, port=_free_port("127.9.0.1"), base_address="127.9.0.1", duration=30,
                       db=db, fault_every=2, sweep_every=3, time_scale=50, api_port=_free_port("127.0.0.1"),
                       token="demo-test-token")
    demo = Demo(opts, console=Console(file=out, width=160))
    assert await demo.run() == 0
    text = out.getvalue()
    assert "inventory of 6/6 nodes" in text
    assert "admin token for this demo: demo-test-token" in text
    assert demo.state.injected, text
    # The first fault is Xid 79 (GPU fell off the bus) on a GPU node: the control plane judges it unhealthy.
    first_node = demo.state.injected[0][1]
    assert demo.states.get(first_node) == "unhealthy", (demo.states, text)
    assert f"{first_node}: degraded → unhealthy" in text or f"{first_node}: healthy → unhealthy" in text, text
    assert set(demo.states) == {f"node-{i:05d}" for i in range(1, 7)}
    with FleetStore(db, migrate=False) as store:
        nodes = store.nodes()
        assert len(nodes) == 6
        assert all(store.latest_inventory(n.name) is not None for n in nodes)
    # automated remediation, as the newcomer watches it
    assert f"dashboard: http://127.0.0.1:{opts.api_port}/?token=demo-test-token" in text
    assert "remediation #1" in text and "#1 cordon: ok" in text and "power-cycle: ok" in text, text
    assert "remediation #1 " in text and ": succeeded" in text, text
    assert demo.state.finished.get(1) == "succeeded", (demo.state.finished, text)
