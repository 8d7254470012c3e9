"""Continuous out-of-band collection: every BMC polled per resource kind on its own interval, spread over time,
adapting to slow and rate-limiting BMCs.

* Intervals per kind (:class:`Intervals`): sensors (thermal/power) fast, inventory/firmware slow.
* No thundering herd: each node's first poll of each kind lands at a random point of its interval, and every later
  one gets ``jitter`` (a fraction of the interval) added or taken away.
* Adaptive: a BMC whose answers take longer than ``slow_s`` on average over a poll (or that throttles, 429/503,
  honouring ``Retry-After``) gets its intervals stretched (x ``backoff`` per step, up to ``max_backoff``); good
  answers shrink them back step by step.
  An unreachable BMC is retried with exponential backoff (``retry_min_s`` .. ``retry_max_s``) and reported to
  the health engine each time.
* Events: where the BMC advertises ``ServerSentEventUri`` an SSE stream is consumed (:mod:`.sse`); elsewhere, when
  serve has a receiver URL, a push subscription is created and kept alive (:mod:`.push`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from redfleet.health.engine import inventory_problems
from redfleet.redfish import RedfishClient, RetryPolicy, Timeouts, collect_inventory, power_state, read_sensors
from redfleet.redfish.errors import RedfishError
from redfleet.redfish.fleet import NodeTarget, raise_open_files
from redfleet.redfish.tls import PinStore, TLSPolicy
from redfleet.telemetry.hub import Hub

log = logging.getLogger(__name__)

_RETRY_AFTER = re.compile(r"Retry-After:\s*([0-9.]+)")
KINDS = ("sensors", "inventory")


@dataclass
class Intervals:
    sensors: float = 10.0  # thermal / power sensors
    inventory: float = 3600.0  # inventory and firmware
    jitter: float = 0.1  # +- this fraction of the interval on every poll
    # A poll whose requests took longer than this each, on average, stretches the node's intervals. Per request,
    # not per poll: a healthy HGX's inventory is ~60 reads and takes seconds, which says nothing about the BMC.
    slow_s: float = 1.0
    backoff: float = 2.0
    max_backoff: float = 16.0  # intervals stretched at most this much
    retry_min_s: float = 2.0  # unreachable BMC: first retry after this, doubling ...
    retry_max_s: float = 60.0  # ... up to this
    event_renew_s: float = 60.0  # push subscriptions checked (and recreated when gone) this often
    # An inventory that shows a component newly Warning/Critical is read again this soon, within the hold time of
    # the component-health rules: a GPU's Health rolls up its temperature, so a read that lands in a short thermal
    # blip says Critical, and without a second look it would stand until the next hourly inventory.
    confirm_s: float = 30.0
    # The pins are read again from their store this often: a certificate an operator accepted elsewhere (redfleet
    # fleet accept-cert, another process) is used without restarting serve.
    pins_s: float = 30.0


@dataclass
class NodeCollectState:
    target: NodeTarget
    factor: float = 1.0  # current interval stretch (adaptive backoff)
    failures: int = 0
    next_due: dict[str, float] = field(default_factory=dict)
    last_duration: float | None = None
    last_error: str | None = None
    throttled: int = 0
    polls: int = 0
    events_mode: str | None = None  # "sse" | "push" | None
    subscription: str | None = None
    retry_after: float | None = None  # the BMC's last Retry-After (throttled)
    subscriptions_made: int = 0  # push subscriptions created (first one + recreations)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by Collector.refresh
    bad_parts: frozenset[str] = frozenset()  # components the last inventory showed bad (inventory_problems)
    confirm: bool = False  # the last inventory showed a newly bad component: read it again after confirm_s
    confirms: int = 0  # confirmation reads scheduled
    pending_cert: str | None = None  # the changed certificate last recorded for an operator


async def reread_pins(pin_store: Any) -> bool:
    """The pin store's ``refresh()`` (in a thread); False, logged, when the store is busy or gone (the pins in
    memory stay)."""
    try:
        await asyncio.to_thread(pin_store.refresh)
    except Exception as exc:
        log.warning("re-reading the TLS pins failed: %s", exc)
        return False
    return True


def retry_after(exc: BaseException) -> float | None:
    m = _RETRY_AFTER.search(str(exc))
    return float(m.group(1)) if m else None


class Collector:
    """Polls every target forever (one task per node, a global cap on polls in flight)."""

    def __init__(self, hub: Hub, targets: list[NodeTarget], *, intervals: Intervals | None = None,
                 pin_store: PinStore | None = None, tls_mode: str = "pin", concurrency: int = 256,
                 receiver_url: str | None = None, push_secret: str | None = None, events: bool = True,
                 inventory: bool = True, timeouts: Timeouts | None = None) -> None:
        self.hub = hub
        self.targets = [t for t in targets if not t.is_ipmi]
        self.iv = intervals or Intervals()
        self.pin_store = pin_store
        self.tls_mode = tls_mode
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.receiver_url = receiver_url
        self.push_secret = push_secret
        self.events = events
        self.inventory = inventory
        self.timeouts = timeouts or Timeouts(default=15.0, connect=5.0, login=15.0, sensors=10.0)
        self.state: dict[str, NodeCollectState] = {t.name: NodeCollectState(t) for t in self.targets}
        self.clients: dict[str, RedfishClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._global = asyncio.Semaphore(1024)
        self.in_flight = 0
        self.max_in_flight = 0
        self.poll_durations: list[float] = []  # recent, for /metrics
        for t in self.targets:
            hub.add_node(t.name, t.url)

    def refresh(self, node: str, kinds: tuple[str, ...] = ("sensors", "inventory")) -> bool:
        """Poll ``node`` now rather than at its next turn (remediation asks when a node is back from a repair:
        its health gate must judge what the BMC says now, not an inventory read before the repair)."""
        st = self.state.get(node)
        if st is None:
            return False
        now = time.monotonic()
        for k in kinds:
            if k in st.next_due:
                st.next_due[k] = min(st.next_due[k], now)
        st.wake.set()
        return True

    # -- lifecycle

    def start(self) -> None:
        # every node keeps its client (session, up to 2 keep-alive connections, an event stream) between polls
        raise_open_files(len(self.targets) * 3 + 1024)
        for t in self.targets:
            self._tasks.append(asyncio.create_task(self._node_loop(self.state[t.name]), name=f"poll:{t.name}"))
        if hasattr(self.pin_store, "refresh"):
            self._tasks.append(asyncio.create_task(self._refresh_pins(), name="pins"))

    async def _refresh_pins(self) -> None:
        while True:
            await asyncio.sleep(self.iv.pins_s)
            await reread_pins(self.pin_store)

    async def _certificate_changed(self, st: NodeCollectState, exc: RedfishError) -> None:
        """A BMC presents a certificate other than its pin: the new one waits in the pin store for an operator
        (``redfleet fleet accept-cert``), who sees it listed; once accepted, the next poll uses it."""
        presented = getattr(exc, "presented", None)
        record = getattr(self.pin_store, "record_pending", None)
        if not presented or record is None or st.pending_cert == presented:
            return
        name = st.target.name
        try:
            if await asyncio.to_thread(record, exc.bmc or st.target.url, presented):
                log.warning("%s: %s; waiting for an operator: redfleet fleet accept-cert %s", name, exc.message, name)
            st.pending_cert = presented
        except Exception as err:
            log.warning("%s: recording the changed certificate failed: %s", name, err)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        from redfleet.telemetry.collector.push import remove_subscription

        subs = [(self.clients[n], st.subscription) for n, st in self.state.items()
                if st.subscription and n in self.clients]
        if subs:  # leave no subscriptions pointing at a receiver that is going away
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(remove_subscription(c, u) for c, u in subs if u),
                                                      return_exceptions=True), 5.0)
        clients, self.clients = self.clients, {}
        await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)

    # -- one node

    def _client(self, t: NodeTarget) -> RedfishClient:
        tls = TLSPolicy(self.tls_mode, pin_store=self.pin_store, fingerprint=t.fingerprint)  # type: ignore[arg-type]
        return RedfishClient(t.url, t.username, t.password, tls=tls, max_concurrency=2, global_limit=self._global,
                             timeouts=self.timeouts, retry=RetryPolicy(attempts=1), name=t.name)

    def _jittered(self, base: float) -> float:
        j = self.iv.jitter
        return base * (1.0 + random.uniform(-j, j))

    def interval(self, st: NodeCollectState, kind: str) -> float:
        return float(getattr(self.iv, kind)) * st.factor

    async def _node_loop(self, st: NodeCollectState) -> None:
        now = time.monotonic()
        # spread: the first poll of each kind at a random point of its interval (the inventory within a minute, so
        # a fresh serve knows its fleet soon; a big fleet's logins and first reads spread the same way)
        st.next_due = {"sensors": now + random.uniform(0, self.iv.sensors),
                       "inventory": now + random.uniform(0, min(self.iv.inventory, 60.0))}
        event_task: asyncio.Task[None] | None = None
        try:
            while True:
                kinds = [k for k in KINDS if k != "inventory" or self.inventory]
                kind = min(kinds, key=lambda k: st.next_due[k])
                delay = st.next_due[kind] - time.monotonic()
                if delay > 0:
                    st.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(st.wake.wait(), delay)
                    continue  # due now, or a refresh moved what is due: choose again
                ok = await self._poll(st, kind)
                now = time.monotonic()
                if ok:
                    st.failures = 0
                    st.next_due[kind] = now + self._jittered(self.interval(st, kind))
                    if kind == "inventory" and st.confirm:
                        st.confirm = False
                        st.confirms += 1
                        st.next_due[kind] = min(st.next_due[kind], now + self.iv.confirm_s)
                    if self.events and event_task is None and st.target.name in self.clients:
                        event_task = asyncio.create_task(self._events(st), name=f"events:{st.target.name}")
                else:
                    st.failures += 1
                    wait = min(self.iv.retry_max_s, self.iv.retry_min_s * 2 ** (st.failures - 1))
                    if st.retry_after:
                        wait = max(wait, st.retry_after)
                        st.retry_after = None
                    for k in kinds:  # nothing else is tried before the retry
                        st.next_due[k] = max(st.next_due[k], now + self._jittered(wait))
        finally:
            if event_task is not None:
                event_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await event_task

    async def _ensure_client(self, st: NodeCollectState) -> RedfishClient:
        c = self.clients.get(st.target.name)
        if c is None:
            c = self._client(st.target)
            try:
                await c.open()
            except BaseException:
                await c.close()
                raise
            self.clients[st.target.name] = c
        return c

    async def _drop_client(self, name: str) -> None:
        c = self.clients.pop(name, None)
        if c is not None:
            with contextlib.suppress(Exception):
                await c.close()

    def _sent(self, st: NodeCollectState) -> int:
        c = self.clients.get(st.target.name)
        return c.requests if c is not None else 0

    async def _poll(self, st: NodeCollectState, kind: str) -> bool:
        name = st.target.name
        async with self.sem:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            t0 = time.monotonic()
            sent = self._sent(st)
            try:
                c = await self._ensure_client(st)
                if kind == "sensors":
                    readings = await read_sensors(c)
                    power = None
                    with contextlib.suppress(RedfishError):  # host On/Off: lets the engine excuse a silent agent
                        power = await power_state(c)
                    self.hub.observe_sensors(name, readings, power_state=power)
                else:
                    # The client is kept between polls and caches what it GETs (one inventory reads a resource
                    # once): every inventory poll starts from an empty cache, or it would repeat the first one.
                    c.forget()
                    try:
                        inv = await collect_inventory(c)
                    finally:
                        # ...and ends with one too: the documents one inventory read (a DGX's are about a megabyte
                        # of Python objects) would otherwise sit in the kept client until the next inventory, an
                        # hour later (serve's RSS grew by ~1 GB at 1,000 BMCs). Sensor polls re-plan once after it.
                        c.forget()
                    dump = inv.model_dump(mode="json")
                    bad = frozenset(inventory_problems(dump))
                    st.confirm = bool(bad - st.bad_parts)
                    st.bad_parts = bad
                    self.hub.observe_inventory(name, dump)
                    self.hub.observe_reachability(name, True)
            except asyncio.CancelledError:
                raise
            except RedfishError as exc:
                st.last_error = str(exc)
                st.last_duration = time.monotonic() - t0
                if exc.kind == "throttled":
                    st.throttled += 1
                    st.factor = min(self.iv.max_backoff, st.factor * self.iv.backoff)
                    st.retry_after = retry_after(exc)
                    return False  # reachable, only busy: no reachability change
                if exc.kind == "certificate-changed":
                    await self._certificate_changed(st, exc)
                if exc.kind in ("unreachable", "timeout", "tls", "certificate-changed", "malformed", "auth",
                                "session-limit"):
                    await self._drop_client(name)
                if exc.kind == "timeout":
                    st.factor = min(self.iv.max_backoff, st.factor * self.iv.backoff)
                self.hub.observe_reachability(name, False, error=f"{exc.kind}: {exc.message}"[:500])
                return False
            except Exception as exc:  # a bug or an unexpected answer: logged, the node stays in rotation
                st.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("polling %s (%s) failed: %s", name, kind, st.last_error)
                await self._drop_client(name)
                return False
            finally:
                self.in_flight -= 1
            st.polls += 1
            dur = st.last_duration = time.monotonic() - t0
            self.poll_durations.append(dur)
            if len(self.poll_durations) > 4096:
                del self.poll_durations[:2048]
            st.last_error = None
            if dur / max(1, self._sent(st) - sent) > self.iv.slow_s:
                st.factor = min(self.iv.max_backoff, st.factor * self.iv.backoff)
            elif st.factor > 1.0:
                st.factor = max(1.0, st.factor / self.iv.backoff)
            return True

    async def _events(self, st: NodeCollectState) -> None:
        from redfleet.telemetry.collector.push import keep_subscription
        from redfleet.telemetry.collector.sse import consume_sse, sse_uri

        name = st.target.name
        while True:
            c = self.clients.get(name)
            if c is None:
                await asyncio.sleep(self.iv.retry_min_s)
                continue
            try:
                uri = await sse_uri(c)
                if uri:
                    st.events_mode = "sse"
                    def on_event(ev: dict[str, Any], n: str = name) -> None:
                        self.hub.observe_bmc_event(n, ev, "redfish-sse")

                    await consume_sse(c, uri, on_event, fingerprint=st.target.fingerprint, pin_store=self.pin_store)
                elif self.receiver_url:
                    st.events_mode = "push"
                    await keep_subscription(c, st, self.receiver_url, self.push_secret or "", self.iv.event_renew_s)
                else:
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("event channel of %s: %s", name, exc)
            await asyncio.sleep(self._jittered(self.iv.retry_min_s * 2))

    # -- reporting

    def summary(self) -> dict[str, Any]:
        states = list(self.state.values())
        return {"nodes": len(states), "clients": len(self.clients),
                "backed_off": sum(1 for s in states if s.factor > 1.0),
                "failing": sum(1 for s in states if s.failures), "throttled": sum(s.throttled for s in states),
                "sse": sum(1 for s in states if s.events_mode == "sse"),
                "push": sum(1 for s in states if s.events_mode == "push"),
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}
