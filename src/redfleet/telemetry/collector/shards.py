"""serve's BMC collector spread over worker processes (``redfleet serve --collector-workers N``).

One Python process can poll only so many BMCs: a warm sensor poll costs ~1.7 ms of CPU on average (a DGX H100's
~500 sensors ~6 ms), so one core holds about 600 polls a second, and 10,000 BMCs polled every 10 s want 1,000.
With workers, each worker process runs an ordinary :class:`~redfleet.telemetry.collector.poller.Collector` over
its share of the BMCs (its own event loop, sessions, connections, SSE streams and push subscriptions) and sends
what it observed to serve in batches over a pipe; serve hands each observation to its hub, where the health
engine, the series store and the API are, exactly as the in-process collector does.

What crosses the pipe is small and cheap to rebuild: a sensor poll travels as one tuple per reading (id, name,
kind, value, health, state, context: what the hub and the engine read), not as models. TLS pins are seeded from
serve's pin store into each worker and a pin a worker makes (trust on first use) comes back to be stored. A worker
that dies is started again after a pause; its BMCs are polled again from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from redfleet.redfish.fleet import NodeTarget
from redfleet.redfish.tls import MemoryPinStore, PinStore, bmc_key
from redfleet.telemetry.collector.poller import reread_pins
from redfleet.telemetry.hub import Hub

log = logging.getLogger(__name__)

READING_FIELDS = ("id", "name", "kind", "value", "health", "state", "context")
FLUSH_S = 0.02  # a worker sends what it observed at most this long after it saw it
SUMMARY_S = 1.0  # and its counters this often
RESTART_S = 5.0  # a dead worker is started again after this pause
STOP_S = 10.0  # a stopping worker gets this long to remove its push subscriptions and close its sessions


# --- the worker side ---------------------------------------------------------------------------------------------


class _Relay:
    """What a worker's Collector takes for the hub: every observation goes into ``out`` for the next batch."""

    def __init__(self) -> None:
        self.out: list[tuple[Any, ...]] = []

    def add_node(self, name: str, bmc_url: str | None = None) -> None:
        pass  # serve's hub knows every node already

    def observe_sensors(self, node: str, readings: Any, power_state: str | None = None) -> None:
        rows = [(r.id, r.name, r.kind, r.value, r.health, r.state, r.context) for r in readings.readings]
        self.out.append(("sensors", node, rows, power_state))

    def observe_inventory(self, node: str, inventory: dict[str, Any]) -> None:
        self.out.append(("inventory", node, inventory))

    def observe_reachability(self, node: str, ok: bool, error: str | None = None) -> None:
        self.out.append(("reach", node, ok, error))

    def observe_bmc_event(self, node: str, event: dict[str, Any], source: str) -> None:
        self.out.append(("event", node, event, source))


class _RelayedPins(MemoryPinStore):
    """The worker's pins: seeded from serve's store; a new pin is kept here and sent back to be stored."""

    def __init__(self, pins: dict[str, str], relay: _Relay) -> None:
        super().__init__(pins)
        self.relay = relay

    def put(self, bmc: str, fingerprint: str) -> None:
        super().put(bmc, fingerprint)
        self.relay.out.append(("pin", bmc, fingerprint))

    def record_pending(self, bmc: str, presented: str) -> bool:
        """A changed certificate, for serve to record for an operator (serve's store says whether it is new)."""
        self.relay.out.append(("pending", bmc, presented))
        return True

    def update(self, pins: dict[str, str]) -> None:
        """Pins serve re-read from its store (an operator accepted a certificate): used from the next connection."""
        for bmc, fp in pins.items():
            MemoryPinStore.put(self, bmc, fp)


def worker_main(conn: Connection, targets: list[NodeTarget], options: dict[str, Any]) -> None:
    """A worker process's entry point."""
    logging.basicConfig(level=options.pop("log_level", logging.WARNING))
    with contextlib.suppress(KeyboardInterrupt):  # serve's Ctrl-C reaches its workers too: serve stops them
        asyncio.run(_work(conn, targets, options))


async def _work(conn: Connection, targets: list[NodeTarget], options: dict[str, Any]) -> None:
    from redfleet.telemetry.collector.poller import Collector

    loop = asyncio.get_running_loop()
    relay = _Relay()
    pins = _RelayedPins(options.pop("pins", {}), relay)
    flush_s = float(options.pop("flush_s", FLUSH_S))
    coll = Collector(relay, targets, pin_store=pins, **options)  # type: ignore[arg-type]
    stop = asyncio.Event()

    def on_command() -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stop":
                    stop.set()
                elif msg[0] == "refresh":
                    coll.refresh(msg[1], tuple(msg[2]))
                elif msg[0] == "pins":
                    pins.update(msg[1])
        except (EOFError, OSError):  # serve is gone: stop too
            stop.set()

    def flush() -> None:
        if relay.out:
            batch, relay.out = relay.out, []
            conn.send(batch)

    loop.add_reader(conn.fileno(), on_command)
    coll.start()
    next_summary = 0.0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), flush_s)
            now = time.monotonic()
            if now >= next_summary:
                relay.out.append(("summary", coll.summary()))
                next_summary = now + SUMMARY_S
            flush()
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # serve is gone
    finally:
        loop.remove_reader(conn.fileno())
        await coll.stop()
        with contextlib.suppress(OSError, ValueError):
            flush()
            conn.send([("stopped",)])
            conn.close()


# --- serve's side ------------------------------------------------------------------------------------------------


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("recording a changed certificate failed: %s", fut.exception())


class _Worker:
    __slots__ = ("biggest", "conn", "index", "pins", "proc", "restarts", "stopped", "summary", "targets")

    def __init__(self, index: int, targets: list[NodeTarget]) -> None:
        self.index = index
        self.targets = targets
        self.proc: Any = None
        self.conn: Connection | None = None
        self.summary: dict[str, Any] = {}
        self.restarts = 0
        self.stopped = False
        self.biggest = 0  # bytes of the largest batch received
        self.pins: dict[str, str] = {}  # what the worker was given, told or sent back, by pin key


class ShardedCollector:
    """The :class:`~redfleet.telemetry.collector.poller.Collector` interface (``start``, ``stop``, ``refresh``,
    ``summary``) over ``workers`` processes, each polling a share of the BMCs (round-robin)."""

    def __init__(self, hub: Hub, targets: list[NodeTarget], *, workers: int, pin_store: PinStore | None = None,
                 restart_s: float = RESTART_S, flush_s: float = FLUSH_S, **options: Any) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.hub = hub
        self.targets = [t for t in targets if not t.is_ipmi]
        self.pin_store = pin_store
        self.options = {**options, "flush_s": flush_s}
        self.restart_s = restart_s
        n = max(1, min(workers, len(self.targets)))
        self.workers = [_Worker(i, self.targets[i::n]) for i in range(n)]
        self.shard_of = {t.name: w.index for w in self.workers for t in w.targets}
        self._ctx = multiprocessing.get_context("spawn")  # not fork: serve has threads and a running loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._all_stopped = asyncio.Event()
        for t in self.targets:
            hub.add_node(t.name, t.url)

    # -- lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for w in self.workers:
            self._spawn(w)
        if hasattr(self.pin_store, "refresh"):
            task = self._loop.create_task(self._refresh_pins(), name="pins")
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    def _pins_for(self, w: _Worker) -> dict[str, str]:
        """The pins of a worker's BMCs, by pin key (``bmc_key``: what the client and the pin stores key them by),
        from memory where the store offers it (no query per BMC)."""
        store = self.pin_store
        if store is None:
            return {}
        keys = [bmc_key(t.url) for t in w.targets]
        items = getattr(store, "items", None)
        if items is not None:
            known = items()
            return {k: fp for k in keys if (fp := known.get(k))}
        return {k: fp for k in keys if (fp := store.get(k))}

    async def _refresh_pins(self) -> None:
        """Re-read the pins every ``intervals.pins_s`` and send each worker what changed for its BMCs."""
        iv = self.options.get("intervals")
        every = float(getattr(iv, "pins_s", 30.0))
        while True:
            await asyncio.sleep(every)
            if not await reread_pins(self.pin_store):
                continue
            for w in self.workers:
                now = self._pins_for(w)
                changed = {u: fp for u, fp in now.items() if w.pins.get(u) != fp}
                if changed and w.conn is not None:
                    with contextlib.suppress(OSError, ValueError):
                        w.conn.send(("pins", changed))
                        w.pins.update(changed)

    def _spawn(self, w: _Worker) -> None:
        assert self._loop is not None
        pins = self._pins_for(w)
        w.pins = dict(pins)
        ours, theirs = self._ctx.Pipe(duplex=True)
        options = {**self.options, "pins": pins, "log_level": logging.getLogger().getEffectiveLevel()}
        w.proc = self._ctx.Process(target=worker_main, args=(theirs, w.targets, options),
                                   name=f"redfleet-collector-{w.index}", daemon=True)
        w.proc.start()
        theirs.close()
        w.conn = ours
        w.stopped = False
        # A thread per worker reads its pipe with blocking recv() and hands each batch to the loop. (The loop's own
        # add_reader would not do: uvloop, which uvicorn uses, makes the fd non-blocking, and a batch larger than
        # the pipe's buffer then fails half-read.)
        threading.Thread(target=self._read, args=(w, ours), name=f"redfleet-collector-{w.index}-reader",
                         daemon=True).start()

    async def stop(self) -> None:
        self._stopping = True
        for t in self._restarts:
            t.cancel()
        for w in self.workers:
            if w.conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(("stop",))
        self._check_stopped()
        with contextlib.suppress(TimeoutError):  # their last batches are read meanwhile (_read)
            await asyncio.wait_for(self._all_stopped.wait(), STOP_S)
        for w in self.workers:
            if w.proc is not None:
                w.proc.join(2.0)
                if w.proc.is_alive():
                    log.warning("collector worker %d did not stop within %g s: terminated", w.index, STOP_S)
                    w.proc.terminate()
                    w.proc.join(2.0)
            self._close(w)

    def _check_stopped(self) -> None:
        if self._stopping and all(w.stopped or w.conn is None for w in self.workers):
            self._all_stopped.set()

    def _close(self, w: _Worker) -> None:
        if w.conn is not None:
            with contextlib.suppress(OSError):
                w.conn.close()
            w.conn = None

    # -- what the workers send

    def _read(self, w: _Worker, conn: Connection) -> None:
        """Reader thread: batches to the loop until the worker's end closes."""
        loop = self._loop
        assert loop is not None
        try:
            while True:
                data = conn.recv_bytes()
                if len(data) > w.biggest:
                    w.biggest = len(data)
                loop.call_soon_threadsafe(self._on_batch, w, pickle.loads(data))
        except (EOFError, OSError):
            with contextlib.suppress(RuntimeError):  # the loop is closed: serve is gone
                loop.call_soon_threadsafe(self._gone, w, conn)

    def _on_batch(self, w: _Worker, batch: list[tuple[Any, ...]]) -> None:
        for msg in batch:
            try:
                self._apply(w, msg)
            except Exception:  # one bad observation must not lose the rest of the batch
                log.exception("collector worker %d: applying %s failed", w.index, msg[0])

    def _apply(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        hub = self.hub
        if kind == "sensors":
            _, node, rows, power = msg
            readings = {"readings": [dict(zip(READING_FIELDS, r, strict=True)) for r in rows]}
            hub.observe_sensors(node, readings, power_state=power)
        elif kind == "reach":
            hub.observe_reachability(msg[1], msg[2], error=msg[3])
        elif kind == "inventory":
            hub.observe_inventory(msg[1], msg[2])
        elif kind == "event":
            hub.observe_bmc_event(msg[1], msg[2], msg[3])
        elif kind == "pin":
            if self.pin_store is not None:
                self.pin_store.put(msg[1], msg[2])
                w.pins[bmc_key(msg[1])] = msg[2]
        elif kind == "pending":
            record = getattr(self.pin_store, "record_pending", None)
            if record is not None and self._loop is not None:
                self._loop.run_in_executor(None, record, msg[1], msg[2]).add_done_callback(_log_failure)
        elif kind == "summary":
            w.summary = msg[1]
        elif kind == "stopped":
            w.stopped = True
            self._check_stopped()

    def _gone(self, w: _Worker, conn: Connection) -> None:
        if conn is not w.conn:
            return  # an earlier process of this worker
        self._close(w)
        if w.proc is not None:
            w.proc.join(1.0)
        if self._stopping or w.stopped:
            self._check_stopped()
            return
        code = w.proc.exitcode if w.proc is not None else None
        log.error("collector worker %d (%d BMCs) exited (code %s): started again in %g s", w.index,
                  len(w.targets), code, self.restart_s)
        w.summary = {}

        async def again() -> None:
            await asyncio.sleep(self.restart_s)
            if not self._stopping:
                w.restarts += 1
                self._spawn(w)

        assert self._loop is not None
        task = self._loop.create_task(again())
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    # -- the Collector interface

    def refresh(self, node: str, kinds: tuple[str, ...] = ("sensors", "inventory")) -> bool:
        i = self.shard_of.get(node)
        w = self.workers[i] if i is not None else None
        if w is None or w.conn is None:
            return False
        try:
            w.conn.send(("refresh", node, list(kinds)))
        except (OSError, ValueError):
            return False
        return True

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": len(self.targets), "clients": 0, "backed_off": 0, "failing": 0,
                               "throttled": 0, "sse": 0, "push": 0, "in_flight": 0, "max_in_flight": 0}
        for w in self.workers:
            for k in out:
                if k != "nodes" and isinstance(w.summary.get(k), int | float):
                    out[k] += w.summary[k]
        out["workers"] = len(self.workers)
        out["workers_alive"] = sum(1 for w in self.workers if w.proc is not None and w.proc.is_alive())
        out["worker_restarts"] = sum(w.restarts for w in self.workers)
        out["largest_batch_bytes"] = max((w.biggest for w in self.workers), default=0)
        return out
