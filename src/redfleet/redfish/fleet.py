"""Run one operation against many BMCs at once; every node gets a result, failures included.

```python
targets = targets_from_fleet(load_fleet_file("fleet.yaml"))
results = await run_fleet(targets, collect_inventory, concurrency=256)
for r in results: print(r.name, r.ok, r.error)
```

Limits: ``concurrency`` BMCs worked on at once, ``per_bmc`` requests in flight per BMC (default 4), and
``global_requests`` requests in flight fleet-wide. A node that fails (timeout, refused session, changed
certificate, malformed answer...) gets its classified error; the rest of the fleet completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from redfleet.model.fleetfile import FleetFile
from redfleet.oslimits import raise_open_files
from redfleet.redfish.client import RedfishClient, RetryPolicy, Timeouts
from redfleet.redfish.errors import RedfishError
from redfleet.redfish.tls import PinStore, TLSPolicy

T = TypeVar("T")
log = logging.getLogger("redfleet.redfish.fleet")


@dataclass
class NodeTarget:
    name: str
    url: str
    username: str | None = None
    password: str | None = None
    fingerprint: str | None = None  # expected TLS pin known in advance (fleet file)
    tags: list[str] = field(default_factory=list)

    @property
    def is_ipmi(self) -> bool:
        return self.url.startswith("ipmi://")


@dataclass
class NodeResult(Generic[T]):
    name: str
    url: str
    ok: bool
    value: T | None = None
    error: BaseException | None = None
    duration_s: float = 0.0

    def error_dict(self) -> dict[str, Any] | None:
        if self.error is None:
            return None
        if isinstance(self.error, RedfishError):
            return self.error.to_dict()
        return {"kind": type(self.error).__name__, "message": str(self.error)}


def targets_from_fleet(fleet: FleetFile, names: Sequence[str] | None = None) -> list[NodeTarget]:
    wanted = set(names) if names else None
    out = []
    for node in fleet.nodes:
        if wanted is not None and node.name not in wanted:
            continue
        cred = fleet.credential_for(node)
        out.append(NodeTarget(
            name=node.name, url=node.bmc_url, username=cred.username if cred else None,
            password=cred.resolve_password() if cred else None, fingerprint=node.tls_fingerprint, tags=node.tags,
        ))
    if wanted is not None:
        missing = wanted - {t.name for t in out}
        if missing:
            raise KeyError(f"not in the fleet file: {', '.join(sorted(missing))}")
    return out


#: Young-generation size (objects) while a fleet operation runs; see :func:`fewer_gc_passes`.
GC_GEN0_DURING_FLEET_OPS = 100_000
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_gc_passes(gen0: int | None = None) -> Iterator[None]:
    """Collect the young generation every ``gen0`` net allocations instead of CPython's 700 while inside, and keep
    what :func:`node_done` hands over out of the cyclic collector's sight until the last fleet operation ends.

    A fleet-wide read allocates several containers per sensor or resource (parsed JSON, readings) and keeps the
    results until it returns: with the default threshold that meant thousands of young and several full collections
    per poll, a third to half of the client CPU of a 600-BMC warm poll (timed with gc.callbacks). Nothing is
    disabled (reference counting frees the parsed documents as before; cycles wait a little longer). The threshold
    is process-wide, so it is restored when the last fleet operation that raised it ends; so is the freeze."""
    global _gc_users, _gc_saved
    gen0 = GC_GEN0_DURING_FLEET_OPS if gen0 is None else gen0
    if _gc_users == 0:
        current = gc.get_threshold()
        if current[0] and current[0] < gen0:
            _gc_saved = current
            gc.set_threshold(gen0, current[1], current[2])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0:
            if _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None
            gc.unfreeze()  # cyclic garbage frozen meanwhile is collected again from here on


def node_done() -> None:
    """A node's part of a fleet operation is finished: everything that exists now (its result, the clients kept
    open, ...) goes to the permanent generation, in constant time. Even with the larger young generation, the full
    collections that a growing heap triggers walked every result kept so far again and again: a fifth of the client
    CPU of a 10,000-BMC sensor read (timed with gc.callbacks), about 7 s. The reads still in flight are freed by
    reference counting as usual; only their cycles wait for the operation's end. A no-op outside a fleet op."""
    if _gc_users:
        gc.freeze()


@dataclass
class FleetOptions:
    concurrency: int = 256
    per_bmc: int = 4
    global_requests: int = 1024
    tls_mode: str = "pin"  # "verify" | "pin" | "insecure"
    ca_bundle: str | None = None
    pin_store: PinStore | None = None
    timeouts: Timeouts | None = None
    retry: RetryPolicy | None = None
    transport: str = "fast"
    auth: str = "auto"
    # FleetPoller: keep each BMC's keep-alive connections open between polls (None: when the open-file limit,
    # raised as far as allowed, holds per_bmc connections per BMC; else they are closed after each node's poll)
    keep_connections: bool | None = None


async def run_fleet(
    targets: Sequence[NodeTarget],
    op: Callable[[RedfishClient], Awaitable[T]],
    *,
    options: FleetOptions | None = None,
    ipmi_op: Callable[[Any], Awaitable[T]] | None = None,
    on_result: Callable[[NodeResult[T]], None] | None = None,
) -> list[NodeResult[T]]:
    """Apply ``op`` to an opened client for every target, concurrently. ``ipmi://`` targets go to ``ipmi_op``
    (an :class:`redfleet.ipmi.IpmiClient`) or fail with a clear error when none is given. Results keep the
    targets' order."""
    opts = options or FleetOptions()
    raise_open_files(max(1, opts.concurrency) * max(1, opts.per_bmc) + 1024)  # what the BMCs worked on may open
    node_sem = asyncio.Semaphore(max(1, opts.concurrency))
    global_limit = asyncio.Semaphore(max(1, opts.global_requests))

    async def one(t: NodeTarget) -> NodeResult[T]:
        async with node_sem:
            t0 = time.monotonic()
            try:
                if t.is_ipmi:
                    if ipmi_op is None:
                        raise RedfishError("this operation needs Redfish; the node has only IPMI", bmc=t.url)
                    from redfleet.ipmi import IpmiClient

                    async with IpmiClient.from_url(t.url, t.username, t.password) as ic:
                        value = await ipmi_op(ic)
                else:
                    tls = TLSPolicy(opts.tls_mode, ca_bundle=opts.ca_bundle, pin_store=opts.pin_store,  # type: ignore[arg-type]
                                    fingerprint=t.fingerprint)
                    client = RedfishClient(
                        t.url, t.username, t.password, tls=tls, auth=opts.auth,  # type: ignore[arg-type]
                        max_concurrency=opts.per_bmc, global_limit=global_limit, timeouts=opts.timeouts,
                        retry=opts.retry, transport=opts.transport, name=t.name,
                    )
                    async with client:
                        value = await op(client)
                res: NodeResult[T] = NodeResult(t.name, t.url, True, value, None, time.monotonic() - t0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is this node's result, never the fleet's
                res = NodeResult(t.name, t.url, False, None, exc, time.monotonic() - t0)
        node_done()
        if on_result is not None:
            on_result(res)
        return res

    with fewer_gc_passes():
        return list(await asyncio.gather(*(one(t) for t in targets)))


class FleetPoller:
    """Long-lived clients for repeated fleet-wide reads (sensor polling): each BMC is discovered and logged in once,
    keeps its session and keep-alive connections, and later polls send only the reads themselves (the chassis list
    and capabilities stay cached per client; sensor values are always read live).

    ```python
    async with FleetPoller(targets, options) as poller:
        first = await poller.poll(read_sensors)
        again = await poller.poll(read_sensors)      # only the reads that gave readings (sensors.SensorPlan)
    ```
    Nodes that cannot be opened get their error in every poll's results; ``reopen=True`` tries them again.
    Where the open-file limit cannot hold every BMC's connections between polls (``keep_connections``), each
    node's connections are closed after its poll and reopened by the next one; sessions are kept either way.
    """

    def __init__(self, targets: Sequence[NodeTarget], options: FleetOptions | None = None) -> None:
        self.targets = [t for t in targets if not t.is_ipmi]
        self.options = options or FleetOptions()
        self.clients: dict[str, RedfishClient] = {}
        self.open_errors: dict[str, BaseException] = {}
        self._global = asyncio.Semaphore(max(1, self.options.global_requests))
        self.keep_connections = self._decide_keep_connections()

    def _decide_keep_connections(self) -> bool:
        o = self.options
        # what idle pools hold, plus what the BMCs being worked on open, plus a margin for everything else
        need = len(self.targets) * max(1, o.per_bmc) + max(1, o.concurrency) * max(1, o.per_bmc) + 1024
        allowed = raise_open_files(need)
        if o.keep_connections is not None:
            return o.keep_connections
        if allowed < need:
            log.warning("open files: %d allowed, %d needed to keep %d connections per BMC open between polls; "
                        "they are closed after each poll instead (sessions stay)", allowed, need, o.per_bmc)
            return False
        return True

    def _after_node(self, c: RedfishClient) -> None:
        if not self.keep_connections:
            c.drop_idle_connections()

    def _client(self, t: NodeTarget) -> RedfishClient:
        o = self.options
        tls = TLSPolicy(o.tls_mode, ca_bundle=o.ca_bundle, pin_store=o.pin_store,  # type: ignore[arg-type]
                        fingerprint=t.fingerprint)
        return RedfishClient(t.url, t.username, t.password, tls=tls, auth=o.auth,  # type: ignore[arg-type]
                             max_concurrency=o.per_bmc, global_limit=self._global, timeouts=o.timeouts,
                             retry=o.retry, transport=o.transport, name=t.name)

    async def open(self) -> None:
        sem = asyncio.Semaphore(max(1, self.options.concurrency))

        async def one(t: NodeTarget) -> None:
            async with sem:
                c = self._client(t)
                try:
                    await c.open()
                except asyncio.CancelledError:
                    await c.close()
                    raise
                except Exception as exc:
                    await c.close()
                    self.open_errors[t.name] = exc
                    return
                self.clients[t.name] = c
                self.open_errors.pop(t.name, None)
                self._after_node(c)
                node_done()

        with fewer_gc_passes():
            await asyncio.gather(*(one(t) for t in self.targets if t.name not in self.clients))

    async def __aenter__(self) -> FleetPoller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        clients, self.clients = self.clients, {}
        await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)

    async def poll(self, op: Callable[[RedfishClient], Awaitable[T]], *, reopen: bool = False) -> list[NodeResult[T]]:
        if reopen and self.open_errors:
            await self.open()
        sem = asyncio.Semaphore(max(1, self.options.concurrency))

        async def one(t: NodeTarget) -> NodeResult[T]:
            c = self.clients.get(t.name)
            if c is None:
                return NodeResult(t.name, t.url, False, None, self.open_errors.get(t.name), 0.0)
            async with sem:
                t0 = time.monotonic()
                try:
                    return NodeResult(t.name, t.url, True, await op(c), None, time.monotonic() - t0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    return NodeResult(t.name, t.url, False, None, exc, time.monotonic() - t0)
                finally:
                    self._after_node(c)
                    node_done()

        with fewer_gc_passes():
            return list(await asyncio.gather(*(one(t) for t in self.targets)))


# ---- several worker processes ------------------------------------------------------------------------------------


class _RemoteError(RedfishError):
    """An error raised in a worker process, carried back as its stable summary (kind, message, bmc, uri)."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__(str(summary.get("message", "")), bmc=summary.get("bmc"), uri=summary.get("uri"),
                         status=summary.get("status"), message_ids=summary.get("message_ids"))
        self.kind = str(summary.get("kind", "error"))
        self.summary = summary

    def to_dict(self) -> dict[str, Any]:
        return dict(self.summary)


def _worker(args: tuple[list[NodeTarget], str, FleetOptions]) -> list[tuple[str, str, bool, Any, Any, float]]:
    targets, op_path, options = args
    import importlib

    mod_name, _, fn_name = op_path.rpartition(".")
    op = getattr(importlib.import_module(mod_name), fn_name)

    async def main() -> list[NodeResult[Any]]:
        return await run_fleet(targets, op, options=options)

    try:
        import uvloop

        results = uvloop.run(main())
    except ImportError:  # pragma: no cover
        results = asyncio.run(main())
    return [(r.name, r.url, r.ok, r.value, r.error_dict(), r.duration_s) for r in results]


def run_fleet_processes(
    targets: Sequence[NodeTarget],
    op: str,
    *,
    options: FleetOptions | None = None,
    workers: int = 2,
    on_result: Callable[[NodeResult[Any]], None] | None = None,
) -> list[NodeResult[Any]]:
    """:func:`run_fleet` spread over ``workers`` processes (one event loop per core): for fleets whose parsing
    work outgrows one core. ``op`` names a module-level coroutine function (``"redfleet.redfish.inventory.
    collect_inventory"``); results come back in the targets' order, errors as their stable summaries. Pin stores
    are not shared between processes: give fingerprints (fleet file) or a JSON/DB store each process can open."""
    import concurrent.futures
    import multiprocessing

    opts = options or FleetOptions()
    workers = max(1, min(workers, len(targets) or 1))
    per = FleetOptions(**{**opts.__dict__, "concurrency": max(1, opts.concurrency // workers),
                          "global_requests": max(1, opts.global_requests // workers)})
    shards = [list(targets[i::workers]) for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    out: dict[str, NodeResult[Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        futs = [ex.submit(_worker, (shard, op, per)) for shard in shards if shard]
        for fut in concurrent.futures.as_completed(futs):
            for name, url, ok, value, err, dur in fut.result():
                res: NodeResult[Any] = NodeResult(name, url, ok, value, _RemoteError(err) if err else None, dur)
                out[name] = res
                if on_result is not None:
                    on_result(res)
    return [out[t.name] for t in targets]
