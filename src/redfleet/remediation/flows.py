"""Workflow records in memory and their reads/writes to the fleet store (:mod:`redfleet.store.remediation`).

The controller works on :class:`Flow` objects and saves them whole after each change (a row per workflow is small);
steps are appended and closed through :class:`FlowStore`. Every write is one short transaction, run in a thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from redfleet.store.remediation import (
    OPEN_STATES,
    RemediationControl,
    RemediationStep,
    RemediationWorkflow,
    RmaRecord,
)
from redfleet.store.repository import FleetStore

T = TypeVar("T")
_FIELDS = ("node", "state", "phase", "rung", "rung_index", "attempt", "trigger", "wlm", "dry_run", "cordon_ours",
           "approval", "approved_by", "approved_rungs", "paused_reason", "data", "error", "rma_id", "started_at",
           "updated_at", "finished_at")


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


@dataclass
class Flow:
    node: str
    state: str
    phase: str
    rung: str | None
    trigger: dict[str, Any]
    wlm: str
    dry_run: bool = False
    rung_index: int = 0
    attempt: int = 1
    cordon_ours: bool | None = None
    approval: dict[str, Any] | None = None
    approved_by: str | None = None
    approved_rungs: list[str] = field(default_factory=list)
    paused_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rma_id: int | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    id: int = 0

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def values(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _FIELDS}

    @classmethod
    def from_row(cls, row: RemediationWorkflow) -> Flow:
        return cls(id=row.id, **{k: getattr(row, k) for k in _FIELDS})


@dataclass
class StepRow:
    id: int
    name: str
    phase: str
    rung: str | None
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    result: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "phase": self.phase, "rung": self.rung, "attempt": self.attempt,
               "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "result": self.result,
               "detail": self.detail}
        if self.finished_at is not None:
            out["duration_s"] = round((self.finished_at - self.started_at).total_seconds(), 3)
        return out


def flow_dict(f: Flow, steps: list[StepRow]) -> dict[str, Any]:
    """The API's shape of a workflow."""
    return {"id": f.id, "node": f.node, "state": f.state, "phase": f.phase, "rung": f.rung, "attempt": f.attempt,
            "trigger": f.trigger, "steps": [s.to_dict() for s in steps], "started_at": iso(f.started_at),
            "finished_at": iso(f.finished_at), "updated_at": iso(f.updated_at), "dry_run": f.dry_run,
            "approval": f.approval, "approved_by": f.approved_by, "rma_id": f.rma_id, "wlm": f.wlm,
            "cordon_ours": f.cordon_ours, "paused_reason": f.paused_reason, "error": f.error,
            "timings": timings(f)}


TIMING_KEYS = ("detected_at", "admitted_at", "cordoned_at", "drained_at", "back_at", "gate_passed_at",
               "uncordoned_at", "total_s")


def timings(f: Flow) -> dict[str, Any]:
    """When each milestone was reached (epoch seconds) and seconds per phase: for the dashboard and benchmarks."""
    d = f.data or {}
    out: dict[str, Any] = {k: d[k] for k in TIMING_KEYS if isinstance(d.get(k), int | float)}
    act = d.get("action")
    if isinstance(act, dict) and isinstance(act.get("issued_at"), int | float):
        out["issued_at"] = act["issued_at"]
    elif isinstance(d.get("issued_at"), int | float):
        out["issued_at"] = d["issued_at"]
    out["phases_s"] = dict(d.get("phases") or {})
    return out


def _step(r: RemediationStep) -> StepRow:
    return StepRow(r.id, r.name, r.phase, r.rung, r.attempt, r.started_at, r.finished_at, r.result,
                   dict(r.detail or {}))


class GroupWriter:
    """Writes from many workflows at once share transactions ("group commit"): each caller still awaits its own
    write's commit, but a hundred workflows cordoning together cost a few SQLite commits, not hundreds, and none
    waits behind serve's other threads — the writer has its own thread. If a batch fails, its writes are redone one
    by one so that one bad write fails alone."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.pending: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remediation-writer")
        self.flushing = False
        self.batches = 0
        self.writes = 0

    async def run(self, fn: Callable[[Session], T]) -> T:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((fn, fut))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        result: T = await fut
        return result

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                outcomes = await loop.run_in_executor(self.pool, self._apply, [fn for fn, _ in batch])
                self.batches += 1
                self.writes += len(batch)
                for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
        finally:
            self.flushing = False

    def _apply(self, fns: list[Callable[[Session], Any]]) -> list[tuple[bool, Any]]:
        try:
            return [(True, v) for v in self.store.transaction(lambda s: [fn(s) for fn in fns])]
        except Exception:
            if len(fns) == 1:
                try:
                    return [(True, self.store.transaction(fns[0]))]
                except Exception as exc:
                    return [(False, exc)]
        out: list[tuple[bool, Any]] = []
        for fn in fns:
            try:
                out.append((True, self.store.transaction(fn)))
            except Exception as exc:
                out.append((False, exc))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class FlowStore:
    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.writer = GroupWriter(store)

    async def audit(self, action: str, target: str | None, *, actor: str, reason: str | None = None,
                    result: str = "ok", details: dict[str, Any] | None = None) -> None:
        """An audit row, written with the workflow writes around it."""
        payload = json.loads(json.dumps(details, default=str)) if details is not None else None
        await self.writer.run(lambda s: self.store._audit(s, action, target, reason=reason, result=result,
                                                          details=payload, actor=actor))

    # -- workflows

    async def create(self, f: Flow) -> Flow:
        def run(s: Session) -> int:
            row = RemediationWorkflow(**f.values())
            s.add(row)
            s.flush()
            return row.id

        f.id = await self.writer.run(run)
        return f

    async def save(self, f: Flow) -> None:
        f.updated_at = datetime.now(UTC)
        vals = f.values()
        await self.writer.run(lambda s: s.execute(
            update(RemediationWorkflow).where(RemediationWorkflow.id == f.id).values(**vals)))

    def open_flows(self) -> list[Flow]:
        return self.store.transaction(lambda s: [Flow.from_row(r) for r in s.scalars(
            select(RemediationWorkflow).where(RemediationWorkflow.state.in_(OPEN_STATES))
            .order_by(RemediationWorkflow.id))], write=False)

    def recent_starts(self, days: float) -> dict[str, list[datetime]]:
        since = datetime.now(UTC) - timedelta(days=days)

        def run(s: Session) -> dict[str, list[datetime]]:
            out: dict[str, list[datetime]] = {}
            for node, at in s.execute(select(RemediationWorkflow.node, RemediationWorkflow.started_at)
                                      .where(RemediationWorkflow.started_at >= since,
                                             RemediationWorkflow.dry_run.is_(False))):
                out.setdefault(node, []).append(at)
            return out

        return self.store.transaction(run, write=False)

    def held_nodes(self, days: float = 30.0) -> dict[str, str]:
        """Nodes whose latest workflow (in ``days``) ended failed or decommissioned."""
        since = datetime.now(UTC) - timedelta(days=days)

        def run(s: Session) -> dict[str, str]:
            last: dict[str, str] = {}
            for node, state in s.execute(select(RemediationWorkflow.node, RemediationWorkflow.state)
                                         .where(RemediationWorkflow.started_at >= since,
                                                RemediationWorkflow.dry_run.is_(False))
                                         .order_by(RemediationWorkflow.id)):
                last[node] = state
            return {n: st for n, st in last.items() if st in ("failed", "decommissioned")}

        return self.store.transaction(run, write=False)

    def workflows(self, *, state: str | None = None, node: str | None = None, active: bool | None = None,
             limit: int = 200) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            q = select(RemediationWorkflow)
            if state is not None:
                q = q.where(RemediationWorkflow.state == state)
            if node is not None:
                q = q.where(RemediationWorkflow.node == node)
            if active is True:
                q = q.where(RemediationWorkflow.state.in_(OPEN_STATES))
            elif active is False:
                q = q.where(RemediationWorkflow.state.not_in(OPEN_STATES))
            rows = list(s.scalars(q.order_by(RemediationWorkflow.id.desc()).limit(limit)))
            steps: dict[int, list[StepRow]] = {r.id: [] for r in rows}
            if rows:
                for st in s.scalars(select(RemediationStep).where(RemediationStep.workflow_id.in_(list(steps)))
                                    .order_by(RemediationStep.id)):
                    steps[st.workflow_id].append(_step(st))
            return [flow_dict(Flow.from_row(r), steps[r.id]) for r in rows]

        return self.store.transaction(run, write=False)

    def get(self, flow_id: int) -> dict[str, Any] | None:
        def run(s: Session) -> dict[str, Any] | None:
            row = s.get(RemediationWorkflow, flow_id)
            if row is None:
                return None
            steps = [_step(x) for x in s.scalars(select(RemediationStep).where(
                RemediationStep.workflow_id == flow_id).order_by(RemediationStep.id))]
            return flow_dict(Flow.from_row(row), steps)

        return self.store.transaction(run, write=False)

    # -- steps

    async def begin_step(self, f: Flow, name: str, *, result: str = "running",
                         detail: dict[str, Any] | None = None) -> int:
        def run(s: Session) -> int:
            row = RemediationStep(workflow_id=f.id, name=name, phase=f.phase, rung=f.rung, attempt=f.attempt,
                                  result=result, detail=detail or {}, started_at=datetime.now(UTC),
                                  finished_at=None if result == "running" else datetime.now(UTC))
            s.add(row)
            s.flush()
            return row.id

        return await self.writer.run(run)

    async def end_step(self, step_id: int, result: str, detail: dict[str, Any] | None = None) -> None:
        def run(s: Session) -> None:
            row = s.get(RemediationStep, step_id)
            if row is None:
                return
            row.result = result
            row.finished_at = datetime.now(UTC)
            if detail:
                row.detail = {**(row.detail or {}), **detail}

        await self.writer.run(run)

    async def update_step(self, step_id: int, detail: dict[str, Any]) -> None:
        def run(s: Session) -> None:
            row = s.get(RemediationStep, step_id)
            if row is not None:
                row.detail = {**(row.detail or {}), **detail}

        await self.writer.run(run)

    # -- control switches

    def control(self) -> dict[str, dict[str, Any]]:
        return self.store.transaction(lambda s: {r.key: {**(r.value or {}), "updated_by": r.updated_by,
                                                         "updated_at": iso(r.updated_at)}
                                                 for r in s.scalars(select(RemediationControl))}, write=False)

    async def set_control(self, key: str, value: dict[str, Any], by: str) -> None:
        def run(s: Session) -> None:
            row = s.get(RemediationControl, key)
            if row is None:
                s.add(RemediationControl(key=key, value=value, updated_by=by, updated_at=datetime.now(UTC)))
            else:
                row.value = value
                row.updated_by = by
                row.updated_at = datetime.now(UTC)

        await self.writer.run(run)

    # -- RMA

    async def add_rma(self, node: str, workflow_id: int, reason: str, parts: list[dict[str, Any]],
                      evidence: dict[str, Any]) -> int:
        def run(s: Session) -> int:
            row = RmaRecord(node=node, workflow_id=workflow_id, reason=reason, parts=parts, evidence=evidence,
                            created_at=datetime.now(UTC))
            s.add(row)
            s.flush()
            return row.id

        return await self.writer.run(run)

    def rmas(self, node: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        def run(s: Session) -> list[dict[str, Any]]:
            q = select(RmaRecord)
            if node is not None:
                q = q.where(RmaRecord.node == node)
            return [rma_dict(r) for r in s.scalars(q.order_by(RmaRecord.id.desc()).limit(limit))]

        return self.store.transaction(run, write=False)

    def rma(self, rma_id: int) -> dict[str, Any] | None:
        def run(s: Session) -> dict[str, Any] | None:
            r = s.get(RmaRecord, rma_id)
            return None if r is None else {**rma_dict(r), "evidence": r.evidence}

        return self.store.transaction(run, write=False)


def rma_dict(r: RmaRecord) -> dict[str, Any]:
    return {"id": r.id, "node": r.node, "workflow_id": r.workflow_id, "created_at": iso(r.created_at),
            "reason": r.reason, "status": r.status, "parts": list(r.parts or [])}
