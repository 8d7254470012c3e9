"""Hook points between the simulator core and its dynamic behaviour (live telemetry, events, faults, in-band side).

The core (fleet.py, node.py, server.py) calls a per-node :class:`NodeDynamics` at fixed points; the fleet calls one
:class:`FleetDynamics` at start and stop. The defaults do nothing, so the core serves static-but-stateful BMCs on its
own. The dynamic side is found by :func:`load_fleet_dynamics`: if ``redfleet.sim.telemetry`` exposes
``make_fleet_dynamics(fleet) -> FleetDynamics`` it is used, unless ``SimConfig.dynamics`` says otherwise.

Every method runs on the event loop thread; none may block. Paths are the canonical template paths as the flavor
writes them (``/redfish/v1/Systems/System.Embedded.1``), without query string and without a trailing slash.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from redfleet.sim.fleet import SimFleet
    from redfleet.sim.node import SimNode

    Doc = dict[str, Any]


class NodeDynamics:
    """Per-node dynamic behaviour. Subclass and override what you need; every default is a no-op."""

    def watches(self, path: str) -> bool:
        """True when :meth:`overlay` must see ``path`` on GET (the core then renders a private copy of the doc).

        Called for every GET, so keep it a set lookup. Paths not watched are served from the shared template
        bytes without any copy (fast path)."""
        return False

    def overlay(self, path: str, doc: Doc) -> Doc | None:
        """Change a private copy of the resource before it is served (live readings, Health/State of faults).

        Return the doc (the same object, mutated, or a new one), or None to answer 404 as if it were absent."""
        return doc

    def live_bytes(self, path: str) -> bytes | None:
        """The served bytes of a watched template resource that nothing on this node changed (no patch), before
        per-node identity: what ``orjson.dumps(overlay(path, doc))`` would give, computed more cheaply. None when
        only :meth:`overlay` can say (the core then renders the document)."""
        return None

    def live_many(self, paths: tuple[str, ...]) -> list[bytes] | None:
        """:meth:`live_bytes` of each of ``paths`` (members of one collection, none patched on this node), or None
        when some of them needs the overlay: one call for a whole ``$expand``."""
        return None

    def hidden(self, path: str) -> bool:
        """True hides the resource: GET answers 404 and collections drop it from Members (a GPU fallen off the bus).

        Called for every GET and for each member of a rendered collection; keep it cheap (a set lookup)."""
        return False

    @property
    def hides_any(self) -> bool:
        """True while :meth:`hidden` may return True for some path (lets the core skip member filtering)."""
        return False

    def takes(self, method: str, path: str) -> bool:
        """Whether :meth:`handle` may answer ``method path``. The core's fast path (plain GETs answered without
        aiohttp) asks this for every GET; return True only for the URIs you serve yourself (SSE, subscriptions).
        Default: True for every request when ``handle`` is overridden (safe), False otherwise."""
        return type(self).handle is not NodeDynamics.handle

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        """Take a request before the core routes it (after authentication). Return a response, or None to let the
        core answer. Use for the SSE stream, EventService subscriptions, SubmitTestEvent."""
        return None

    def on_power(self, old: str, new: str, reset_type: str | None) -> None:
        """The host's PowerState changed (``On``, ``Off``, ``PoweringOn``, ``PoweringOff``). ``reset_type`` is the
        ComputerSystem.Reset value that started it, or None for transitions the simulator made itself. A power
        cycle is ``On``→``Off``/``PoweringOff``… then ``PoweringOn``→``On``."""

    def accepts_reset(self, reset_type: str) -> bool:
        """Asked before the core starts a ComputerSystem.Reset; False = answer as usual but change nothing (a hung
        OS ignores GracefulShutdown/GracefulRestart)."""
        return True

    def on_manager_reset(self, down: bool) -> None:
        """The BMC goes down (``down=True``: connections refused from now) or is back (``down=False``)."""

    def on_log_entry(self, log_path: str, entry: Doc) -> None:
        """The core appended ``entry`` to the LogService at ``log_path`` (publish an event, …)."""

    def on_resource_changed(self, path: str, changes: Doc) -> None:
        """A client PATCH (or a core action) changed ``path``; ``changes`` is what was merged."""


class FleetDynamics:
    """Fleet-wide dynamic side: one per SimFleet."""

    def node_dynamics(self, node: SimNode) -> NodeDynamics:
        return NodeDynamics()

    async def start(self, fleet: SimFleet) -> None:
        """Called once every BMC listens (start tickers, in-band listeners)."""

    async def stop(self) -> None:
        """Called before the fleet closes its listeners."""


NO_DYNAMICS = NodeDynamics()


def load_fleet_dynamics(fleet: SimFleet) -> FleetDynamics:
    """The dynamic side for ``fleet``: ``SimConfig.dynamics`` if it is a callable (``fleet -> FleetDynamics``),
    the no-op default if it is False, else ``redfleet.sim.telemetry.make_fleet_dynamics`` when that exists."""
    choice = fleet.config.dynamics
    if choice is False:
        return FleetDynamics()
    if callable(choice):
        result: FleetDynamics = choice(fleet)
        return result
    try:
        module = importlib.import_module("redfleet.sim.telemetry")
    except ImportError:
        return FleetDynamics()
    factory = getattr(module, "make_fleet_dynamics", None)
    if factory is None:
        return FleetDynamics()
    result = factory(fleet)
    return result
