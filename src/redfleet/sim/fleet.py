"""SimConfig and SimFleet: N simulated BMCs served by one asyncio process.

Each BMC listens on its own loopback address (127.1.0.1, 127.1.0.2, …) on one shared port. Listening sockets are
plain sockets watched with ``loop.add_reader``; an accepted connection is handed to the shared aiohttp handler with
the BMC's own TLS context (built on its first connection), so 10,000 BMCs cost 10,000 file descriptors and little
else until they are used.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from redfleet.model.fleetfile import Credential, FleetFile, FleetNode
from redfleet.oslimits import raise_open_files
from redfleet.sim.certs import CertStore
from redfleet.sim.fastpath import FastProtocol
from redfleet.sim.flavors import REDFISH_FLAVORS, Flavor, get_flavor, mockup_flavor
from redfleet.sim.hooks import FleetDynamics, load_fleet_dynamics
from redfleet.sim.latency import LatencySpec
from redfleet.sim.node import SimNode
from redfleet.sim.server import RedfishHandler

log = logging.getLogger("redfleet.sim")

NODES_PER_RACK = 40


@dataclass
class SimConfig:
    nodes: int = 6
    mix: dict[str, int] | None = None
    port: int = 0  # the CLI defaults to 443
    http: bool = False
    base_address: str = "127.1.0.1"
    host_base_address: str | None = None
    seed: int = 1
    time_scale: float = 1.0
    control_port: int | None = None
    user: str = "root"
    password: str = "calvin"
    mockup: Path | str | None = None
    session_limit: int | None = None
    latency: str | float | LatencySpec | None = None
    cache_dir: Path | None = None
    dynamics: Any = None  # None: auto; False: none; callable(fleet) -> FleetDynamics
    # read by the dynamic side (sim-dyn): in-band /metrics, fault timeline, lemon nodes
    ipmi_port: int = 623  # UDP, legacy-ipmi nodes
    inband: bool = False
    inband_port: int = 9400
    scenario: Path | str | None = None
    lemons: str | None = None
    identity: bool | None = None  # per-node serials/UUIDs/MACs/host names; None = yes, except with `mockup`
    fast_path: bool = True  # answer plain authenticated GETs without aiohttp (see fastpath.py)
    backlog: int = 64
    nodes_per_rack: int = NODES_PER_RACK
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    index: int
    address: str
    bmc_url: str
    flavor: str
    rack: str
    position: int
    host_address: str
    cert_fingerprint: str | None


def parse_mix(text: str) -> dict[str, int]:
    """``dell=40,hpe=20`` -> {"dell": 40, "hpe": 20} (flavors checked)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, count = part.partition("=")
        if not sep:
            raise ValueError(f"--mix: {part!r} is not FLAVOR=N")
        name = name.strip()
        get_flavor(name)
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"--mix: {count!r} is not a number") from None
        if n < 0:
            raise ValueError(f"--mix: {name} count must be >= 0")
        out[name] = out.get(name, 0) + n
    return out


def plan_flavors(cfg: SimConfig) -> list[Flavor]:
    if cfg.mockup is not None:
        return [mockup_flavor(Path(cfg.mockup))]
    if cfg.mix:
        out: list[Flavor] = []
        for name, n in cfg.mix.items():
            out.extend([get_flavor(name)] * n)
        return out
    names = list(REDFISH_FLAVORS)
    return [get_flavor(names[i % len(names)]) for i in range(cfg.nodes)]


class SimFleet:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.log = log
        self.latency = LatencySpec.parse(config.latency) if config.latency is not None else None
        # a single --mockup BMC serves its tree verbatim unless asked otherwise
        self.identity = config.identity if config.identity is not None else config.mockup is None
        self._nodes: list[SimNode] = []
        self._order: list[Any] = []  # every node in index order (SimNode or LegacyIpmiNode)
        self._legacy: list[tuple[int, str, str, str, str, int]] = []
        self.ipmi: Any = None
        self._infos: list[NodeInfo] | None = None
        self._by_name: dict[str, SimNode] = {}
        self._by_addr: dict[str, SimNode] = {}
        self._listeners: dict[int, socket.socket] = {}
        self.port = config.port
        self.started_at = time.monotonic()
        # while a response is rendered, every simulated clock reads this one instant (see SimNode.now): a Sensors
        # collection expanded in one GET is one snapshot, and the telemetry model computes each driver once
        self.instant: float | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment,unused-ignore]
        self.certs = CertStore(config.cache_dir, config.seed)
        self.dynamics: FleetDynamics | None = None
        self.control_url: str | None = None
        self._control_runner: web.AppRunner | None = None
        self._server: web.Server | None = None
        self.handler: RedfishHandler | None = None
        import base64

        self.basic_header = b"Basic " + base64.b64encode(f"{config.user}:{config.password}".encode())
        self._pending: set[asyncio.Task[Any]] = set()
        self._fast_conns: set[FastProtocol] = set()
        self.started = False

    # ---- lookups -------------------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[NodeInfo]:
        if self._infos is None or len(self._infos) != len(self._order):
            self._infos = [self.info(n) for n in self._order]
        return list(self._infos)

    @property
    def sim_nodes(self) -> list[SimNode]:
        return list(self._nodes)

    def node(self, name: str) -> Any:
        """The live node (a ``LegacyIpmiNode`` for legacy-ipmi nodes)."""
        try:
            return self._by_name[name]
        except KeyError:
            if self.ipmi is not None:
                try:
                    return self.ipmi.node(name)  # type: ignore[no-any-return,unused-ignore]
                except KeyError:
                    pass
            raise KeyError(f"no simulated node {name!r}") from None

    def node_by_address(self, address: str) -> SimNode | None:
        return self._by_addr.get(address)

    def info(self, n: Any) -> NodeInfo:
        if not isinstance(n, SimNode):  # legacy-ipmi
            return NodeInfo(
                name=n.name,
                index=n.index,
                address=n.address,
                bmc_url=self.ipmi.url(n) if self.ipmi is not None else f"ipmi://{n.address}",
                flavor="legacy-ipmi",
                rack=n.rack,
                position=n.position,
                host_address=n.host_address,
                cert_fingerprint=None,
            )
        return NodeInfo(
            name=n.name,
            index=n.index,
            address=n.address,
            bmc_url=self.bmc_url(n),
            flavor=n.flavor.name,
            rack=n.rack,
            position=n.position,
            host_address=n.host_address,
            cert_fingerprint=n.fingerprint,
        )

    def bmc_url(self, n: SimNode) -> str:
        scheme = "http" if self.config.http else "https"
        default = 80 if self.config.http else 443
        port = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{n.address}{port}"

    def check_credentials(self, user: str, password: str, node: SimNode | None = None) -> bool:
        expected = node.password if node is not None and node.password is not None else self.config.password
        return user == self.config.user and password == expected

    def fleet_file(self) -> FleetFile:
        cred = Credential(username=self.config.user, password=self.config.password)
        nodes = [
            FleetNode(
                name=i.name,
                bmc_url=i.bmc_url,
                credential="sim",
                flavor=i.flavor,
                rack=i.rack,
                position=i.position,
                host_address=i.host_address,
                tls_fingerprint=i.cert_fingerprint,
            )
            for i in self.nodes
        ]
        return FleetFile(credentials={"sim": cred}, nodes=nodes)

    # ---- build ---------------------------------------------------------------------------------------------
    def _build_nodes(self) -> None:
        cfg = self.config
        flavors = plan_flavors(cfg)
        base = ipaddress.IPv4Address(cfg.base_address)
        if cfg.host_base_address:
            host_base = ipaddress.IPv4Address(cfg.host_base_address)
        else:
            octets = base.packed
            host_base = ipaddress.IPv4Address(bytes([octets[0], (octets[1] + 1) % 256, octets[2], octets[3]]))
        if not base.is_loopback:
            log.warning("base address %s is not a loopback address", base)
        per_rack = max(1, cfg.nodes_per_rack)
        for i, flavor in enumerate(flavors):
            name = f"node-{i + 1:05d}"
            if not flavor.redfish:
                self._legacy.append(
                    (i, name, str(base + i), str(host_base + i), f"rack-{i // per_rack + 1:02d}", i % per_rack + 1)
                )
                self._order.append(None)
                continue
            facts = flavor.facts()
            n = SimNode(
                self,
                i,
                name,
                str(base + i),
                str(host_base + i),
                flavor,
                facts,
                rack=f"rack-{i // per_rack + 1:02d}",
                position=i % per_rack + 1,
            )
            self._nodes.append(n)
            self._order.append(n)
            self._by_name[name] = n
            self._by_addr[n.address] = n
        if not cfg.http:
            for n in self._nodes:
                n.fingerprint = self.certs.ensure(n.index, n.name, n.address, n.cert_generation)
            self.certs.save()

    def rotate_certificate(self, name: str) -> str:
        """Give that BMC a new certificate (new connections see it); returns the new fingerprint."""
        n = self.node(name)
        n.cert_generation += 1
        n.fingerprint = self.certs.ensure(n.index, n.name, n.address, n.cert_generation)
        self.certs.save()
        n.ssl_context = None
        self._infos = None
        return n.fingerprint

    def ssl_context_for(self, n: SimNode) -> Any:
        if n.ssl_context is None:
            self.certs.ensure(n.index, n.name, n.address, n.cert_generation)
            n.ssl_context = self.certs.context(n.name, n.address, n.cert_generation)
        return n.ssl_context

    # ---- listening -----------------------------------------------------------------------------------------
    def _bind(self, address: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(self.config.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _watch(self, n: SimNode, sock: socket.socket) -> None:
        self._listeners[n.index] = sock
        self.loop.add_reader(sock.fileno(), self._accept, n, sock)

    def _accept(self, n: SimNode, sock: socket.socket) -> None:
        for _ in range(32):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept on %s: %s", n.address, exc)
                    return
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert self._server is not None
            factory: Any = self._fast_factory if self.config.fast_path else self._server
            if self.config.http:
                coro = self.loop.connect_accepted_socket(factory, conn)
            else:
                coro = self.loop.connect_accepted_socket(
                    factory, conn, ssl=self.ssl_context_for(n), ssl_handshake_timeout=30.0
                )
            task = self.loop.create_task(coro)
            self._pending.add(task)
            task.add_done_callback(self._accepted)

    def _fast_factory(self) -> FastProtocol:
        return FastProtocol(self)

    @property
    def aiohttp_server(self) -> web.Server:
        assert self._server is not None
        return self._server

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("connection setup failed: %r", task.exception())

    def set_listening(self, n: SimNode, listening: bool) -> None:
        """Open or close that BMC's listener; closing also resets its open connections."""
        if not self.started:
            return
        sock = self._listeners.pop(n.index, None)
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        if not listening:
            self._abort_connections(n.address)
            return
        try:
            self._watch(n, self._bind(n.address, self.port))
        except OSError as exc:
            log.warning("cannot listen again on %s:%s: %s", n.address, self.port, exc)

    def _abort_connections(self, address: str) -> None:
        for proto in list(self._fast_conns):
            transport = proto._transport
            if transport is not None and proto._node is not None and proto._node.address == address:
                transport.abort()
        if self._server is None:
            return
        for handler in list(self._server.connections):
            transport = handler.transport
            if transport is None:
                continue
            sock = transport.get_extra_info("sockname")
            if sock and sock[0] == address:
                transport.abort()

    async def _listen_all(self) -> None:
        nodes = self._nodes
        raise_open_files(len(self._order) * 3 + 4096)
        if not nodes:
            return
        raise_open_files(len(nodes) * 2 + 4096)
        for _attempt in range(20):
            socks: list[socket.socket] = []
            try:
                first = self._bind(nodes[0].address, self.config.port)
                port = first.getsockname()[1]
                socks.append(first)
                for n in nodes[1:]:
                    socks.append(self._bind(n.address, port))
            except OSError as exc:
                for s in socks:
                    s.close()
                if self.config.port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                where = nodes[len(socks)].address if len(socks) < len(nodes) else "?"
                raise OSError(exc.errno, f"cannot listen on {where}:{self.config.port}: {exc.strerror}") from exc
            self.port = port
            for n, s in zip(nodes, socks, strict=True):
                self._watch(n, s)
            return
        raise OSError(errno.EADDRINUSE, "no port free on every simulated address")

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> SimFleet:
        self.loop = asyncio.get_running_loop()
        self.started_at = time.monotonic()
        self._build_nodes()
        self.handler = RedfishHandler(self)
        self._server = web.Server(self.handler, access_log=None)
        self.dynamics = load_fleet_dynamics(self)
        for n in self._nodes:
            n.dyn = self.dynamics.node_dynamics(n)
        await self._listen_all()
        if self._legacy:
            await self._start_ipmi()
        self._infos = None  # the port is known now
        self.started = True
        await self.dynamics.start(self)
        if self.config.control_port is not None:
            await self._start_control()
        return self

    async def _start_ipmi(self) -> None:
        from redfleet.sim.ipmi import IpmiNodeSettings, start_ipmi_nodes

        cfg = self.config
        legacy = self._legacy
        self.ipmi = await start_ipmi_nodes(
            [a for _i, _n, a, _h, _r, _p in legacy],
            port=cfg.ipmi_port,
            names=[n for _i, n, _a, _h, _r, _p in legacy],
            first_index=legacy[0][0],
            settings=IpmiNodeSettings(user=cfg.user, password=cfg.password, seed=cfg.seed),
            time_scale=cfg.time_scale,
        )
        for (i, _n, _a, host, rack, pos), node in zip(legacy, self.ipmi.nodes, strict=True):
            node.host_address, node.rack, node.position = host, rack, pos
            self._order[i] = node

    async def _start_control(self) -> None:
        try:
            module = importlib.import_module("redfleet.sim.control")
        except ImportError:
            log.warning("control API not available (redfleet.sim.control missing)")
            return
        build = getattr(module, "build_control_app", None)
        if build is None:
            log.warning("control API not available (no build_control_app)")
            return
        app = build(self)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.config.control_port or 0)
        await site.start()
        self._control_runner = runner
        server: Any = site._server
        port = server.sockets[0].getsockname()[1] if server is not None and server.sockets else 0
        self.control_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if self.dynamics is not None:
            try:
                await self.dynamics.stop()
            except Exception:  # pragma: no cover
                log.exception("dynamics stop failed")
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None
        for n in self._nodes:
            n.cancel_timers()
        if self.ipmi is not None:
            await self.ipmi.stop()
        for _idx, sock in list(self._listeners.items()):
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self._listeners.clear()
        for t in list(self._pending):
            t.cancel()
        for proto in list(self._fast_conns):
            if proto._transport is not None:
                proto._transport.abort()
        self._fast_conns.clear()
        if self._server is not None:
            await self._server.shutdown(0.5)
            for handler in list(self._server.connections):
                if handler.transport is not None:
                    handler.transport.abort()

    async def __aenter__(self) -> SimFleet:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        await asyncio.Event().wait()
