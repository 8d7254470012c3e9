"""`redfleet demo`, small: the fleet is inventoried into the store and injected faults are noticed."""

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
    opts = DemoOptions(nodes=6, port=_free_port("127.9.0.1"), base_address="127.9.0.1", duration=9,
                       db=db, fault_every=1.5, sweep_every=4, time_scale=50)
    demo = Demo(opts, console=Console(file=out, width=160))
    assert await demo.run() == 0
    text = out.getvalue()
    assert "inventory of 6/6 nodes" in text
    assert demo.state.injected, text
    assert demo.state.sweeps >= 1
    # The first fault is Xid 79 (GPU fell off the bus) on a GPU node: the re-inventory sees the GPU go.
    first_node = demo.state.injected[0][1]
    assert f"changed {first_node}: GPU" in text or f"health {first_node}" in text, text
    with FleetStore(db, migrate=False) as store:
        nodes = store.nodes()
        assert len(nodes) == 6
        assert all(store.latest_inventory(n.name) is not None for n in nodes)
