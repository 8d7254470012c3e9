"""The remediation controller: health verdicts in, durable workflows out.

It reconciles, as a Kubernetes controller does: each pass compares what the health engine says about each node
with the open workflows and starts, advances or finishes them. A workflow is a row in the fleet store
(:mod:`redfleet.remediation.flows`) and moves through phases:

    cordon -> drain -> remediate (the rung's action) -> wait (node back) -> gate (health) -> uncordon
                                   ^-- next rung when the action, the wait or the gate fails --'
    ... -> decommission (RMA record with evidence; the node stays cordoned and is retired)

Each phase handler is idempotent: it reads the workflow's stored ``data`` to know what was already done, so a
restarted ``serve`` simply calls it again. Power actions are recorded as intended before they are sent and as
issued after; a workflow found between the two looks for evidence that the node rebooted before it sends anything
again (see :meth:`RemediationController._phase_remediate`).

Safety comes before any action: a global pause, a circuit breaker that trips when too many nodes turn unhealthy
at once (a shared cause — network, monitoring — must not become a mass reboot), caps on concurrent workflows
(absolute, share of the fleet, per rack), lemon detection, maintenance windows, dry-run and approvals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redfleet.remediation.executors import Executor, run_command
from redfleet.remediation.flows import Flow, FlowStore, iso, utc
from redfleet.remediation.policy import Policy
from redfleet.remediation.wlm.base import WlmError, WorkloadManager
from redfleet.store.remediation import OPEN_STATES

log = logging.getLogger("redfleet.remediation")
ACTOR = "redfleet-remediation"
STATE_RANK = {"healthy": 0, "unknown": 0, "degraded": 1, "unhealthy": 2}
PHASES = ("cordon", "drain", "remediate", "wait", "gate", "uncordon", "decommission")
UNKNOWN_ISSUE_GRACE = 60.0  # after a restart between "intended" and "issued": look this long for a reboot first
MAX_WLM_ERRORS = 5


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    i = min(len(v) - 1, max(0, round(q * (len(v) - 1))))
    return round(v[i], 3)


class RemediationController:
    """``hub`` is serve's :class:`~redfleet.telemetry.hub.Hub` (health and node status), ``commands`` the in-band
    :class:`~redfleet.remediation.commands.CommandQueue` (None: no agent rungs), ``node_records`` returns the
    store's node records (rack, lifecycle) — refreshed every few seconds."""

    def __init__(self, store: Any, hub: Any, *, policy: Policy, wlm: WorkloadManager, executor: Executor,
                 commands: Any = None, clock: Callable[[], float] = time.time, tick: float = 0.5,
                 node_records: Callable[[], dict[str, Any]] | None = None, evidence: Any = None) -> None:
        self.store = store
        self.flows = FlowStore(store)
        self.hub = hub
        self.policy = policy
        self.wlm = wlm
        self.executor = executor
        self.commands = commands
        self.clock = clock
        self.tick = tick
        self.node_records = node_records or (lambda: {r.name: r for r in store.nodes()})
        self.evidence = evidence
        self.open: dict[str, Flow] = {}  # node -> its open workflow
        self.drivers: dict[int, asyncio.Task[None]] = {}
        self.wake = asyncio.Event()
        self.dirty: set[str] = set()  # nodes whose health changed since the last pass
        self.transitions: deque[tuple[float, str]] = deque()  # (when, node) turned unhealthy: the breaker's window
        self.paused: dict[str, Any] | None = None
        self.breaker: dict[str, Any] | None = None  # set while tripped
        self.deferred: dict[str, str] = {}  # node -> why it waits (caps, pause, breaker)
        # node -> outcome of its last workflow when that was failed/decommissioned: no new workflow for the same
        # incident (that would loop); cleared once the node's health recovers.
        self.hold: dict[str, str] = {}
        self.starts: dict[str, list[datetime]] = {}
        self.records: dict[str, Any] = {}
        self.records_at = 0.0
        self.phase_seconds: dict[str, deque[float]] = {p: deque(maxlen=2000) for p in PHASES}
        self.mttr: deque[float] = deque(maxlen=2000)
        self.outcomes: dict[str, int] = {}
        self.started_total = 0
        self._task: asyncio.Task[None] | None = None
        self.unknown_issue_grace = UNKNOWN_ISSUE_GRACE
        # asks the BMC collector to poll a node now (set by serve once its collector runs)
        self.refresh: Callable[[str], Any] | None = None
        self._records_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        ctl = await asyncio.to_thread(self.flows.control)
        self.paused = ctl["paused"] if ctl.get("paused", {}).get("paused") else None
        self.breaker = ctl["breaker"] if ctl.get("breaker", {}).get("tripped") else None
        self.starts = await asyncio.to_thread(self.flows.recent_starts, self.policy.safety.lemon.days)
        for f in await asyncio.to_thread(self.flows.open_flows):
            self.open[f.node] = f
            log.info("resuming remediation #%d of %s at %s/%s", f.id, f.node, f.phase, f.rung)
        self.hold = await asyncio.to_thread(self.flows.held_nodes)
        await self._records()
        self.dirty.update(self.hub.nodes)
        self.hub.listeners.append(self.on_health_change)
        self._task = asyncio.create_task(self.run(), name="remediation")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.hub.listeners.remove(self.on_health_change)
        tasks = [t for t in (self._task, *self.drivers.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.wlm.close()
        await asyncio.to_thread(self.flows.writer.close)

    def on_health_change(self, rec: dict[str, Any]) -> None:
        """A hub listener: called on the event loop for each health change."""
        node = str(rec.get("node"))
        if rec.get("new") == "unhealthy" and rec.get("old") != "unhealthy" and node not in self.open:
            self.transitions.append((float(rec.get("at") or self.clock()), node))
        self.dirty.add(node)
        self.wake.set()

    async def run(self) -> None:
        full_every = 10.0
        last_full = 0.0
        while True:
            try:
                now = self.clock()
                if now - last_full >= full_every:
                    self.dirty.update(self.hub.nodes)
                    last_full = now
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("remediation pass failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.tick)

    # ------------------------------------------------------------------ the pass

    async def reconcile(self) -> None:
        now = self.clock()
        await self._check_breaker(now)
        if self.dirty:
            dirty, self.dirty = self.dirty, set()
            await self._admit(dirty, now)
        for f in list(self.open.values()):
            if f.id not in self.drivers or self.drivers[f.id].done():
                self.drivers[f.id] = asyncio.create_task(self._drive(f), name=f"remediation-{f.id}")

    def _fleet_size(self) -> int:
        return max(1, len(self.hub.nodes))

    async def _records(self) -> dict[str, Any]:
        """The store's node records (rack, lifecycle), at most a few seconds old. Re-read in the background: at
        10,000 nodes the read takes long enough that admission must not wait for it."""
        if not self.records_at:
            self.records = await asyncio.to_thread(self.node_records)
            self.records_at = self.clock()
        elif self.clock() - self.records_at > 5.0 and self._records_task is None:
            async def refresh() -> None:
                try:
                    self.records = await asyncio.to_thread(self.node_records)
                    self.records_at = self.clock()
                finally:
                    self._records_task = None

            self._records_task = asyncio.create_task(refresh())
        return self.records

    async def _check_breaker(self, now: float) -> None:
        b = self.policy.safety.breaker
        while self.transitions and self.transitions[0][0] < now - b.window:
            self.transitions.popleft()
        if self.breaker is not None:
            return
        nodes = {n for _, n in self.transitions}
        threshold = max(b.min_nodes, self._fleet_size() * b.unhealthy_percent / 100.0)
        if len(nodes) > threshold:
            reason = (f"{len(nodes)} nodes turned unhealthy within {b.window:g} s (more than "
                      f"{b.unhealthy_percent:g}% of {self._fleet_size()}): a shared cause is likely")
            self.breaker = {"tripped": True, "tripped_at": iso(utc(now)), "reason": reason,
                            "nodes": sorted(nodes)[:50], "count": len(nodes)}
            log.warning("remediation circuit breaker tripped: %s", reason)
            await self.flows.set_control("breaker", self.breaker, ACTOR)
            await self.flows.audit("remediation.breaker.trip", None, reason=reason, actor=ACTOR,
                                   details={"count": len(nodes), "nodes": sorted(nodes)[:50]})

    def _blocked(self) -> str | None:
        if self.paused is not None:
            return f"automation paused by {self.paused.get('by') or 'an operator'}: " \
                   f"{self.paused.get('reason') or 'no reason given'}"
        if self.breaker is not None:
            return f"circuit breaker tripped: {self.breaker.get('reason')}"
        return None

    def _wants(self, node: str) -> tuple[str, dict[str, Any]] | None:
        """The rung a node's current verdict asks for, with the verdict; None when nothing is to be done."""
        h = self.hub.health(node)
        state = str(h.get("state") or "unknown")
        if STATE_RANK.get(state, 0) < STATE_RANK[self.policy.min_state]:
            return None
        rung, asking = self.policy.rung_for(list(h.get("reasons") or []))
        if rung is None:
            return None
        return rung, {**h, "asking": asking}

    async def _admit(self, nodes: set[str], now: float) -> None:
        wanted = []
        for node in nodes:
            if node in self.open:
                continue
            w = self._wants(node)
            if w is None:
                self.deferred.pop(node, None)
                self.hold.pop(node, None)
                continue
            if node in self.hold:
                self.deferred[node] = f"its last remediation ended {self.hold[node]}: left to an operator"
                continue
            wanted.append((w[1].get("since") or now, node, w[0], w[1]))
        if not wanted:
            return
        records = await self._records()
        wanted.sort(key=lambda x: (x[0] if isinstance(x[0], int | float) else now, x[1]))
        cap = self.policy.safety.cap(self._fleet_size())
        racks: dict[str, int] = {}
        for f in self.open.values():
            r = getattr(records.get(f.node), "rack", None)
            if r is not None:
                racks[r] = racks.get(r, 0) + 1
        admitted: list[tuple[str, str, dict[str, Any]]] = []
        for _since, node, rung, verdict in wanted:
            rec = records.get(node)
            if rec is not None and getattr(rec, "state", "active") != "active":
                self.deferred[node] = f"lifecycle is {rec.state}: automation leaves it alone"
                continue
            blocked = self._blocked()
            if blocked:
                self.deferred[node] = blocked
                self.dirty.add(node)  # look again once unblocked
                continue
            active = len(self.open) + len(admitted)
            if active >= cap:
                self.deferred[node] = f"cap: {active} workflows active (at most {cap})"
                self.dirty.add(node)
                continue
            rack = getattr(rec, "rack", None) if rec is not None else None
            if rack is not None:
                if racks.get(rack, 0) >= self.policy.safety.max_per_rack:
                    self.deferred[node] = f"rack {rack}: {racks[rack]} workflows active (at most " \
                                          f"{self.policy.safety.max_per_rack})"
                    self.dirty.add(node)
                    continue
                racks[rack] = racks.get(rack, 0) + 1
            self.deferred.pop(node, None)
            admitted.append((node, rung, verdict))
        # Admission is decided above, on the loop, with nothing awaited in between; the writes of all the
        # workflows admitted in this pass then go together (a storm of faults is not queued one by one).
        await asyncio.gather(*(self._start(node, rung, verdict, now) for node, rung, verdict in admitted))

    async def _start(self, node: str, rung: str, verdict: dict[str, Any], now: float) -> Flow:
        lemon = self.policy.safety.lemon
        recent = [t for t in self.starts.get(node, []) if (utc(now) - t).total_seconds() < lemon.days * 86400]
        reasons = [r for r in list(verdict.get("asking") or [])[:20] if isinstance(r, dict)]
        others = [r for r in list(verdict.get("reasons") or [])[:20] if isinstance(r, dict) and r not in reasons]
        action = next((r.get("action") for r in reasons if self.policy.rung_for([r])[0] == rung),
                      verdict.get("action"))
        trigger: dict[str, Any] = {"action": action,
                                   "node_action": verdict.get("action"), "state": verdict.get("state"),
                                   "reasons": reasons, "other_reasons": others, "detected_at": verdict.get("since")}
        if len(recent) + 1 >= lemon.remediations and rung != "decommission":
            trigger["lemon"] = (f"{len(recent) + 1} remediations within {lemon.days:g} days "
                                f"(limit {lemon.remediations}): straight to decommission")
            rung = "decommission"
        f = Flow(node=node, state="running", phase="cordon", rung=rung, rung_index=self.policy.ladder.index(rung),
                 trigger=trigger, wlm=self.wlm.name, dry_run=self.policy.dry_run,
                 data={"phase_at": now, "detected_at": verdict.get("since") or now, "admitted_at": now})
        self.open[node] = f  # counted by the caps from now on, before anything is awaited
        try:
            await self.flows.create(f)
        except BaseException:
            self.open.pop(node, None)
            raise
        # drive it now rather than at the next pass: the cordon is the first thing a broken node needs
        self.drivers[f.id] = asyncio.create_task(self._drive(f), name=f"remediation-{f.id}")
        self.started_total += 1
        if not f.dry_run:
            self.starts.setdefault(node, []).append(utc(now))
        why = "; ".join(f"{r.get('rule')}@{r.get('component')}: {r.get('message')}"
                        for r in reasons[:3])
        log.warning("remediation #%d started on %s (%s -> %s): %s", f.id, node, trigger["action"], rung, why)
        await self.flows.audit("remediation.start", node, reason=why[:2000], actor=ACTOR,
                               details={"workflow": f.id, "rung": rung, "action": trigger["action"],
                                         "dry_run": f.dry_run, "lemon": trigger.get("lemon")})
        return f

    # ------------------------------------------------------------------ driving one workflow

    async def _drive(self, f: Flow) -> None:
        while f.open:
            try:
                delay = await self._advance(f)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("remediation #%d of %s: %s failed", f.id, f.node, f.phase)
                errors = f.data.setdefault("errors", 0) + 1
                f.data["errors"] = errors
                if errors >= MAX_WLM_ERRORS:
                    await self._finish(f, "failed", f"{f.phase}: {exc}")
                    break
                await self.flows.save(f)
                delay = min(30.0, 2.0 ** errors)
            if delay is None:
                break
            await asyncio.sleep(delay)
        if self.open.get(f.node) is f:
            del self.open[f.node]
        self.drivers.pop(f.id, None)
        self.wake.set()

    async def _advance(self, f: Flow) -> float | None:
        blocked = self._blocked()
        if blocked:
            if f.state != "paused" or f.paused_reason != blocked:
                f.state, f.paused_reason = "paused", blocked
                await self.flows.save(f)
            return 1.0
        if f.state == "paused" and (f.paused_reason or "").startswith(("automation paused", "circuit breaker")):
            f.state, f.paused_reason = "running", None
            await self.flows.save(f)
        handler = getattr(self, f"_phase_{f.phase}")
        delay: float | None = await handler(f)
        return delay

    def _end_phase(self, f: Flow, now: float) -> None:
        """Account the time spent in the current phase (a phase entered again, e.g. after a rung failed, adds up)."""
        started = f.data.get("phase_at")
        if isinstance(started, int | float):
            self.phase_seconds[f.phase].append(now - started)
            phases = f.data.setdefault("phases", {})
            phases[f.phase] = round(phases.get(f.phase, 0.0) + now - started, 3)

    async def _goto(self, f: Flow, phase: str, **data: Any) -> None:
        now = self.clock()
        self._end_phase(f, now)
        f.phase = phase
        f.data["phase_at"] = now
        f.data.pop("step_id", None)
        f.data.update(data)
        await self.flows.save(f)

    async def _finish(self, f: Flow, state: str, error: str | None = None) -> None:
        now = self.clock()
        self._end_phase(f, now)
        f.state, f.error, f.phase = state, error, "done"
        f.finished_at = datetime.now(UTC)
        f.approval = None
        detected = f.data.get("detected_at")
        if isinstance(detected, int | float):
            f.data["total_s"] = round(now - detected, 3)
            if not f.dry_run:
                self.mttr.append(now - detected)
        await self.flows.save(f)
        self.outcomes[state] = self.outcomes.get(state, 0) + 1
        if state in ("failed", "decommissioned") and not f.dry_run:
            self.hold[f.node] = state
        log.warning("remediation #%d of %s: %s%s", f.id, f.node, state, f": {error}" if error else "")
        await self.flows.audit(f"remediation.{state}", f.node, reason=error, actor=ACTOR,
                               result="ok" if state in ("succeeded", "decommissioned") else "error",
                               details={"workflow": f.id, "rung": f.rung, "phases": f.data.get("phases")})

    async def _audit(self, f: Flow, action: str, reason: str, result: str = "ok", **details: Any) -> None:
        await self.flows.audit(f"remediation.{action}", f.node, reason=reason[:2000], result=result, actor=ACTOR,
                                details={"workflow": f.id, "rung": f.rung, "attempt": f.attempt, **details})

    def _wlm_reason(self, f: Flow) -> str:
        """What the workload manager shows (Slurm's Reason): the action and the rules, no ids or components, so
        that a storm of one fault shares one reason and its drains go out as one call. `redfleet remediation list
        --node N` has the rest."""
        rules = sorted({str(r.get("rule")) for r in f.trigger.get("reasons") or [] if isinstance(r, dict)})
        return f"{f.trigger.get('action') or 'remediation'} {','.join(rules[:4])}".strip()[:150]

    def _why(self, f: Flow) -> str:
        keys = [f"{r.get('rule')}@{r.get('component')}" for r in f.trigger.get("reasons") or [] if isinstance(r, dict)]
        return f"#{f.id} {f.trigger.get('action') or ''}: {', '.join(keys[:5])}"[:300]

    # -- cordon / drain

    async def _phase_cordon(self, f: Flow) -> float | None:
        if f.dry_run:
            f.cordon_ours = True
            await self.flows.begin_step(f, "cordon", result="dry-run", detail={"would": f"cordon in {f.wlm}"})
        else:
            try:
                st = await self.wlm.cordon(f.node, self._wlm_reason(f))
                with contextlib.suppress(WlmError):
                    await self.wlm.set_verdict(f.node, False, self._why(f))
            except WlmError as exc:
                await self.flows.begin_step(f, "cordon", result="failed", detail={"error": str(exc)})
                if not exc.retryable:
                    await self._finish(f, "failed", f"cordon: {exc}")
                    return None
                raise
            cordoned_at = self.clock()
            f.cordon_ours = st.ours
            detail = {"ours": st.ours, "state": st.state, "reason": st.reason}
            if not st.ours:
                detail["note"] = "already cordoned by an operator: redfleet will not return it to service"
            f.data["cordoned_at"] = cordoned_at
            await asyncio.gather(self.flows.begin_step(f, "cordon", result="ok", detail=detail),
                                 self._audit(f, "cordon", self._why(f), ours=st.ours, wlm=f.wlm))
        await self._goto(f, "drain", cordoned_at=f.data.get("cordoned_at") or self.clock())
        return 0.0

    async def _phase_drain(self, f: Flow) -> float | None:
        step = f.data.get("step_id")
        if step is None:
            step = await self.flows.begin_step(f, "drain")
            f.data["step_id"] = step
            f.data["drain_started"] = self.clock()
            await self.flows.save(f)
        if f.dry_run:
            await self.flows.end_step(step, "dry-run", {"would": f"drain in {f.wlm}"})
            await self._goto(f, "remediate", drained_at=self.clock())
            return 0.0
        p = await self.wlm.drain(f.node)
        if p.done:
            await self.flows.end_step(step, "ok", {"message": p.message})
            await self._goto(f, "remediate", drained_at=self.clock())
            return 0.0
        if self.clock() - float(f.data.get("drain_started") or 0) > self.policy.drain.timeout:
            await self.flows.end_step(step, "timeout", {"running": p.running, "message": p.message})
            if self.policy.drain.on_timeout == "fail":
                await self._finish(f, "failed", f"drain: {p.running} still running after "
                                               f"{self.policy.drain.timeout:g} s")
                return None
            await self._goto(f, "remediate", drained_at=self.clock(), drain_timed_out=True)
            return 0.0
        return max(0.5, min(10.0, p.retry_after or 2.0))

    # -- the rung's action

    async def _phase_remediate(self, f: Flow) -> float | None:
        rung = f.rung or "decommission"
        if self.policy.needs_approval(rung) and rung not in f.approved_rungs:
            if f.state != "waiting_approval":
                f.state = "waiting_approval"
                f.approval = {"rung": rung, "requested_at": iso(datetime.now(UTC))}
                await self.flows.save(f)
                await self.flows.begin_step(f, "approval", result="running", detail={"rung": rung})
                log.warning("remediation #%d of %s waits for approval of %s", f.id, f.node, rung)
            return 2.0
        if rung == "decommission":
            await self._goto(f, "decommission")
            return 0.0
        if self.policy.is_disruptive(rung) and not self.policy.safety.in_window(datetime.now(UTC)):
            reason = "outside every maintenance window"
            if f.state != "paused" or f.paused_reason != reason:
                f.state, f.paused_reason = "paused", reason
                await self.flows.save(f)
            return 15.0
        if f.state != "running":
            f.state, f.paused_reason = "running", None
            await self.flows.save(f)
        if f.dry_run:
            await self.flows.begin_step(f, rung, result="dry-run", detail={"would": f"{rung} {f.node}"})
            await self._finish(f, "succeeded", None)
            return None
        if rung == "gpu-reset":
            return await self._gpu_reset(f)
        if rung == "reboot":
            return await self._os_reboot(f)
        return await self._bmc_action(f, rung)

    def _gpus(self, f: Flow) -> list[int]:
        out = []
        for r in f.trigger.get("reasons") or []:
            comp = str(r.get("component") or "") if isinstance(r, dict) else ""
            if comp.startswith("gpu:") and comp[4:].isdigit():
                out.append(int(comp[4:]))
        return sorted(set(out))

    def _agent_alive(self, node: str, within: float = 30.0) -> bool:
        st = self.hub.nodes.get(node)
        return bool(st and st.agent_seen and self.clock() - st.agent_seen < within and st.os_state == "up")

    async def _escalate(self, f: Flow, why: str) -> float:
        """The rung failed: try it again if its retries allow, else climb the ladder."""
        rung = f.rung or "decommission"
        await self._audit(f, "rung-failed", why, result="error")
        if f.attempt <= self.policy.rung(rung).retries:
            f.attempt += 1
            await self._goto(f, "remediate", last_failure=why)
            return 0.0
        nxt = self.policy.next_rung(rung)
        f.rung, f.rung_index, f.attempt = nxt, self.policy.ladder.index(nxt), 1
        log.warning("remediation #%d of %s: %s failed (%s); next rung %s", f.id, f.node, rung, why, nxt)
        await self._goto(f, "remediate", last_failure=why)
        return 0.0

    async def _gpu_reset(self, f: Flow) -> float:
        gpus = self._gpus(f)
        if self.commands is None or not gpus or not self._agent_alive(f.node):
            why = ("no in-band command channel" if self.commands is None else
                   "the verdict names no GPU" if not gpus else "the in-band agent is not answering")
            await self.flows.begin_step(f, "gpu-reset", result="skipped", detail={"why": why})
            return await self._escalate(f, f"gpu-reset not possible: {why}")
        ids = [self.commands.submit(f.node, "gpu-reset", gpu=g, reason=self._why(f)).id for g in gpus]
        step = await self.flows.begin_step(f, "gpu-reset", detail={"gpus": gpus, "commands": ids})
        await self._audit(f, "gpu-reset", self._why(f), gpus=gpus)
        await self._goto(f, "wait", step_id=step, wait="commands", commands=ids, issued_at=self.clock())
        return 0.5

    async def _os_reboot(self, f: Flow) -> float:
        if self.commands is None or not self._agent_alive(f.node):
            why = "no in-band command channel" if self.commands is None else \
                "the in-band agent is not answering (a hung host cannot reboot itself)"
            await self.flows.begin_step(f, "reboot", result="skipped", detail={"why": why})
            return await self._escalate(f, f"reboot not possible: {why}")
        cmd = self.commands.submit(f.node, "reboot", reason=self._why(f))
        step = await self.flows.begin_step(f, "reboot", detail={"command": cmd.id})
        await self._audit(f, "reboot", self._why(f))
        await self._goto(f, "wait", step_id=step, wait="boot", commands=[cmd.id], issued_at=self.clock())
        return 1.0

    def _booted_since(self, node: str, t: float) -> bool:
        st = self.hub.nodes.get(node)
        return bool(st and st.boot_at is not None and st.boot_at >= t - 1.0)

    async def _bmc_action(self, f: Flow, rung: str) -> float:
        """power-cycle or reimage: intent first, then the call, then "issued" — all in the workflow row."""
        act = f.data.get("action")
        now = self.clock()
        if isinstance(act, dict) and act.get("rung") == rung and act.get("attempt") == f.attempt:
            if act.get("issued_at"):  # sent before a restart: only the wait is left
                await self._goto(f, "wait", wait="boot", issued_at=act["issued_at"], step_id=None)
                return 0.0
            # Intended, never confirmed sent: serve stopped in between. Look for the reboot before sending again.
            intent = float(act.get("intent_at") or now)
            if self._booted_since(f.node, intent):
                await self.flows.end_step(int(act["step_id"]), "ok", {"note": "confirmed by the node's reboot "
                                                                              "after a restart of serve"})
                act["issued_at"] = intent
                await self._goto(f, "wait", wait="boot", issued_at=intent, step_id=None)
                return 0.0
            if now - intent < self.unknown_issue_grace:
                return 2.0
            await self.flows.update_step(int(act["step_id"]), {
                "note": f"no sign that the {rung} sent before serve restarted took effect within "
                        f"{self.unknown_issue_grace:g} s: sending it now (once)"})
            step = int(act["step_id"])
        else:
            step = await self.flows.begin_step(f, rung, detail={"intent": True})
            before = self.hub.nodes.get(f.node)
            f.data["action"] = {"rung": rung, "attempt": f.attempt, "intent_at": now, "step_id": step,
                                "before": {"power_state": getattr(before, "power_state", None),
                                           "boot_at": getattr(before, "boot_at", None)}}
            await self.flows.save(f)  # the intent is durable before anything is sent
        why = self._why(f)
        try:
            if rung == "power-cycle":
                used = await self.executor.power(f.node, "cycle", actor=ACTOR, reason=why)
            else:
                used = await self._reimage(f, why)
        except Exception as exc:
            await self.flows.end_step(step, "failed", {"error": str(exc)[:2000]})
            f.data.pop("action", None)
            await self._audit(f, rung, why, result="error", error=str(exc)[:500])
            return await self._escalate(f, f"{rung}: {exc}")
        issued = self.clock()
        f.data["action"]["issued_at"] = issued
        await self.flows.end_step(step, "ok", {"sent": used})
        await self._audit(f, rung, why, sent=used)
        await self._goto(f, "wait", wait="boot", issued_at=issued, step_id=None)
        return 1.0

    async def _reimage(self, f: Flow, why: str) -> str:
        hook = self.policy.reimage
        if hook.method == "command":
            if not hook.command:
                raise RuntimeError("reimage.method is command but no reimage.command is set")
            t = self.executor.targets.get(f.node)
            res = await run_command(hook.command, env={"REDFLEET_NODE": f.node,
                                                       "REDFLEET_BMC_URL": t.url if t else "",
                                                       "REDFLEET_REASON": why}, timeout=300.0)
            if not res.ok:
                raise RuntimeError(f"reimage command exited {res.returncode}: {res.output[-300:]}")
            return f"command: {' '.join(hook.command)}"
        if not hook.image:
            raise RuntimeError("reimage.method is virtual-media but no reimage.image (ISO URL) is set")
        return await self.executor.reimage_virtual_media(f.node, hook.image, actor=ACTOR, reason=why)

    # -- wait for the node, then the gate

    async def _phase_wait(self, f: Flow) -> float | None:
        rung = f.rung or ""
        issued = float(f.data.get("issued_at") or self.clock())
        timeout = self.policy.rung(rung).timeout
        step = f.data.get("step_id")
        if step is None:
            step = await self.flows.begin_step(f, "wait", detail={"for": f.data.get("wait")})
            f.data["step_id"] = step
            await self.flows.save(f)
        if f.data.get("wait") == "commands":
            outcomes = [self.commands.outcome(c) if self.commands is not None else None
                        for c in f.data.get("commands") or []]
            failed = [o for o in outcomes if o is not None and not o.ok]
            if failed:
                await self.flows.end_step(step, "failed", {"agent": [o.message for o in failed]})
                return await self._escalate(f, f"{rung}: agent said {failed[0].message}")
            if outcomes and all(o is not None for o in outcomes):
                await self.flows.end_step(step, "ok", {"agent": [o.message for o in outcomes if o]})
                # The reset is done: what the driver said before it is history; fresh telemetry judges the GPU.
                clear = getattr(self.hub.engine, "clear", None)
                if clear is not None and rung == "gpu-reset":
                    for g in self._gpus(f):
                        clear(f.node, None, f"gpu:{g}")
                await self._goto(f, "gate", back_at=self.clock())
                return 0.5
        else:
            st = self.hub.nodes.get(f.node)
            had_agent = bool(st and st.agent_seen)
            if had_agent:
                back = self._booted_since(f.node, issued) and self._agent_alive(f.node, within=15.0) \
                    and bool(st and st.agent_seen and st.agent_seen > issued)
            else:  # no in-band agent: the BMC's word and a minimum time
                back = bool(st and st.power_state == "On" and st.bmc_seen and st.bmc_seen > issued + 10.0)
            if back:
                # The node rebooted: the events and Xids it logged before are what this rung acted on. They are
                # acknowledged (the engine forgets them) so the gate judges fresh evidence only; a fault that
                # survived shows again in new events or in live conditions (a GPU still missing).
                clear = getattr(self.hub.engine, "clear", None)
                cleared = clear(f.node) if clear is not None else 0
                if self.refresh is not None:  # and what the BMC says is read afresh, not from before the repair
                    self.refresh(f.node)
                await self.flows.end_step(step, "ok", {"waited_s": round(self.clock() - issued, 3),
                                                       "acknowledged_evidence": cleared})
                await self._goto(f, "gate", back_at=self.clock())
                return 0.5
        if self.clock() - issued > timeout:
            await self.flows.end_step(step, "timeout", {"after_s": timeout})
            return await self._escalate(f, f"{rung}: the node was not back within {timeout:g} s")
        return 1.0

    def _gate_ok(self, f: Flow) -> tuple[bool, str]:
        h = self.hub.health(f.node)
        state = str(h.get("state") or "unknown")
        if state in ("unhealthy", "unknown"):
            why = ", ".join(f"{r.get('rule')}@{r.get('component')}" for r in h.get("reasons") or []
                            if isinstance(r, dict) and r.get("severity") == "critical")
            return False, f"health is {state}" + (f" ({why})" if why else "")
        keys = {(r.get("rule"), r.get("component")) for r in f.trigger.get("reasons") or [] if isinstance(r, dict)}
        left = [r for r in h.get("reasons") or [] if isinstance(r, dict) and (r.get("rule"), r.get("component"))
                in keys]
        if left:
            return False, f"still {left[0].get('rule')}@{left[0].get('component')}"
        # a part the BMC reads Critical since the repair is held by its rule for a while (a blip clears in that
        # time); the gate does not pass a node on it meanwhile
        held = getattr(self.hub.engine, "held", None)
        pending = [r for r in (held(f.node) if held is not None else []) if r.severity == "critical"]
        if pending:
            return False, f"{pending[0].rule}@{pending[0].component} held (the BMC says {pending[0].message})"
        st = self.hub.nodes.get(f.node)
        if st is not None and st.agent_seen and not self._agent_alive(f.node, within=15.0):
            return False, "the in-band agent is not reporting"
        return True, state

    async def _phase_gate(self, f: Flow) -> float | None:
        g = self.policy.health_gate
        now = self.clock()
        step = f.data.get("step_id")
        if step is None:
            step = await self.flows.begin_step(f, "gate")
            f.data["step_id"] = step
            f.data["gate_started"] = now
            f.data.pop("gate_ok_since", None)
            await self.flows.save(f)
        ok, why = self._gate_ok(f)
        if ok:
            since = f.data.setdefault("gate_ok_since", now)
            if now - since >= g.settle:
                detail: dict[str, Any] = {"health": why, "settled_s": round(now - since, 3)}
                if g.command:
                    res = await run_command(g.command, env={"REDFLEET_NODE": f.node}, timeout=g.command_timeout)
                    detail["command"] = {"argv": g.command, "returncode": res.returncode, "output": res.output[-1000:]}
                    if not res.ok:
                        await self.flows.end_step(step, "failed", detail)
                        return await self._escalate(f, f"health gate command failed ({res.returncode})")
                await self.flows.end_step(step, "ok", detail)
                await self._goto(f, "uncordon", gate_passed_at=now)
                return 0.0
        else:
            f.data.pop("gate_ok_since", None)
            f.data["gate_last"] = why
        if now - float(f.data.get("gate_started") or now) > g.timeout:
            await self.flows.end_step(step, "failed", {"last": why})
            return await self._escalate(f, f"health gate: {why} after {g.timeout:g} s")
        return 0.5

    async def _phase_uncordon(self, f: Flow) -> float | None:
        if f.dry_run:
            await self.flows.begin_step(f, "uncordon", result="dry-run")
        elif f.cordon_ours:
            resumed = await self.wlm.uncordon(f.node)
            f.data["uncordoned_at"] = self.clock()
            with contextlib.suppress(WlmError):
                await self.wlm.set_verdict(f.node, True, f"#{f.id} remediated")
            await self.flows.begin_step(f, "uncordon", result="ok" if resumed else "skipped",
                                        detail={"resumed": resumed} if resumed else
                                        {"why": "the cordon is no longer ours (an operator changed it)"})
            await self._audit(f, "uncordon", f"#{f.id} passed its health gate", resumed=resumed)
        else:
            await self.flows.begin_step(f, "uncordon", result="skipped",
                                        detail={"why": "cordoned by an operator before redfleet: left as it was"})
        f.data.setdefault("uncordoned_at", self.clock())
        await self._finish(f, "succeeded")
        return None

    async def _phase_decommission(self, f: Flow) -> float | None:
        step = await self.flows.begin_step(f, "decommission")
        reasons = list(f.trigger.get("reasons") or [])
        evidence: dict[str, Any]
        try:
            evidence = await self._collect_evidence(f, reasons)
        except Exception as exc:  # the record matters more than a complete bundle
            evidence = {"node": f.node, "reasons": reasons, "errors": [f"evidence: {exc}"]}
        parts = list(evidence.get("suspect_parts") or [])
        why = f.trigger.get("lemon") or f.data.get("last_failure") or f"{f.trigger.get('action')}"
        reason = f"{self._why(f)}: {why}"
        rma = await self.flows.add_rma(f.node, f.id, reason, parts, evidence)
        f.rma_id = rma
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.set_node_state, f.node, "retired",
                                    reason=f"decommissioned by remediation #{f.id}: RMA {rma}", actor=ACTOR)
        await self.flows.end_step(step, "ok", {"rma_id": rma, "parts": len(parts)})
        await self._audit(f, "decommission", reason, rma_id=rma)
        await self._finish(f, "decommissioned")
        return None

    async def _collect_evidence(self, f: Flow, reasons: list[dict[str, Any]]) -> dict[str, Any]:
        if self.evidence is not None:
            result: dict[str, Any] = await self.evidence(f, reasons)
            return result
        try:
            from redfleet.remediation.evidence import collect_evidence
        except ImportError:
            return {"node": f.node, "reasons": reasons, "suspect_parts": []}
        return await collect_evidence(f.node, reasons=reasons, store=self.store, hub=self.hub,
                                      target=self.executor.targets.get(f.node), workflow={"id": f.id},
                                      pin_store=self.executor.pin_store, tls_mode=self.executor.tls_mode)

    # ------------------------------------------------------------------ operators

    async def pause(self, by: str, reason: str | None) -> None:
        self.paused = {"paused": True, "by": by, "reason": reason, "at": iso(datetime.now(UTC))}
        await self.flows.set_control("paused", self.paused, by)
        await self.flows.audit("remediation.pause", None, reason=reason, actor=by)
        self.wake.set()

    async def resume(self, by: str) -> None:
        self.paused = None
        await self.flows.set_control("paused", {"paused": False}, by)
        await self.flows.audit("remediation.resume", None, actor=by)
        self.dirty.update(self.hub.nodes)
        self.wake.set()

    async def reset_breaker(self, by: str) -> None:
        was = self.breaker
        self.breaker = None
        self.transitions.clear()  # the storm that tripped it is the operator's to have judged
        await self.flows.set_control("breaker", {"tripped": False, "reset_by": by}, by)
        await self.flows.audit("remediation.breaker.reset", None, actor=by, details={"was": was})
        self.dirty.update(self.hub.nodes)
        self.wake.set()

    async def approve(self, flow_id: int, by: str, comment: str | None = None) -> Flow:
        f = next((x for x in self.open.values() if x.id == flow_id), None)
        if f is None:
            raise KeyError(flow_id)
        if f.state != "waiting_approval" or not f.approval:
            raise ValueError(f"remediation #{flow_id} is {f.state}, not waiting for approval")
        rung = str(f.approval["rung"])
        f.approved_rungs = [*f.approved_rungs, rung]
        f.approved_by = by
        f.approval = None
        f.state = "running"
        await self.flows.save(f)
        await self.flows.begin_step(f, "approved", result="ok", detail={"rung": rung, "by": by, "comment": comment})
        await self._audit(f, "approve", comment or f"{rung} approved", by=by, approved=rung)
        self.wake.set()
        return f

    # ------------------------------------------------------------------ figures

    def status(self) -> dict[str, Any]:
        b = self.policy.safety.breaker
        now = self.clock()
        in_window = len({n for t, n in self.transitions if t >= now - b.window})
        states = [f.state for f in self.open.values()]
        return {
            "paused": self.paused is not None,
            "paused_reason": (self.paused or {}).get("reason"), "paused_by": (self.paused or {}).get("by"),
            "breaker": {"tripped": self.breaker is not None, "tripped_at": (self.breaker or {}).get("tripped_at"),
                        "reason": (self.breaker or {}).get("reason"), "threshold_percent": b.unhealthy_percent,
                        "window_s": b.window, "unhealthy_in_window": in_window},
            "dry_run": self.policy.dry_run, "wlm": self.wlm.name,
            "active": len(states), "waiting_approval": states.count("waiting_approval"),
            "deferred": len(self.deferred),
            "caps": {"max_concurrent": self.policy.safety.max_concurrent,
                     "max_percent": self.policy.safety.max_concurrent_percent,
                     "max_per_rack": self.policy.safety.max_per_rack,
                     "effective": self.policy.safety.cap(self._fleet_size())},
            "started_total": self.started_total, "outcomes": dict(self.outcomes),
            "mttr_s": {"count": len(self.mttr), "p50": _percentile(list(self.mttr), 0.5),
                       "p90": _percentile(list(self.mttr), 0.9), "p99": _percentile(list(self.mttr), 0.99)},
            "phases_s": {p: {"count": len(v), "p50": _percentile(list(v), 0.5), "p99": _percentile(list(v), 0.99)}
                         for p, v in self.phase_seconds.items()},
        }

    def open_states(self) -> dict[str, str]:
        return {n: f.state for n, f in self.open.items() if f.state in OPEN_STATES}
