"""Remediation endpoints (``/api/v1/remediations``, ``/api/v1/remediation/*``, ``/api/v1/rma``) and the operator's
power action on a node (``POST /api/v1/nodes/{name}/power``). Reads need viewer, changes operator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from redfleet.api.auth import Principal, require

router = APIRouter(tags=["remediation"])
viewer = Depends(require("viewer"))
operator = Depends(require("operator"))
WorkflowState = Literal["running", "waiting_approval", "succeeded", "decommissioned", "failed", "paused"]


class Step(BaseModel):
    name: str
    phase: str | None = None
    rung: str | None = None
    attempt: int = 1
    started_at: str
    finished_at: str | None
    result: str
    duration_s: float | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Workflow(BaseModel):
    id: int
    node: str
    state: WorkflowState
    phase: str
    rung: str | None
    attempt: int = 1
    trigger: dict[str, Any]
    steps: list[Step]
    started_at: str
    finished_at: str | None
    updated_at: str | None = None
    dry_run: bool
    approval: dict[str, Any] | None = None
    approved_by: str | None = None
    rma_id: int | None = None
    wlm: str
    cordon_ours: bool | None = None
    paused_reason: str | None = None
    error: str | None = None
    timings: dict[str, Any] = Field(default_factory=dict)


class ApproveIn(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class PauseIn(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class BootIn(BaseModel):
    target: Literal["pxe", "hdd", "cd", "virtual-cd", "usb", "bios", "none", "uefi-http"]
    once: bool = True
    reason: str | None = Field(default=None, max_length=2000)


BMC_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such node"},
    502: {"description": "the node's BMC refused the action or did not answer (the detail says which and why)"},
    503: {"description": "no fleet store"},
}


class PowerIn(BaseModel):
    action: Literal["on", "off", "cycle", "reset", "graceful", "graceful-restart"]
    reason: str | None = Field(default=None, max_length=2000)


def _flows(request: Request) -> Any:
    store = request.app.state.store
    if store is None:
        raise HTTPException(503, "no fleet store")
    from redfleet.remediation.flows import FlowStore

    return FlowStore(store)


def _controller(request: Request) -> Any:
    c = request.app.state.remediation
    if c is None:
        raise HTTPException(409, "automated remediation is not enabled on this server (serve --remediation)")
    return c


@router.get("/remediations", response_model=list[Workflow], dependencies=[viewer],
            summary="Remediation workflows, newest first")
async def list_workflows(request: Request, state: WorkflowState | None = None,
                         node: str | None = Query(None, max_length=200), active: bool | None = None,
                         limit: int = Query(200, ge=1, le=5000)) -> list[dict[str, Any]]:
    flows = _flows(request)
    return await run_in_threadpool(lambda: flows.workflows(state=state, node=node, active=active, limit=limit))


@router.get("/remediations/{wid}", response_model=Workflow, dependencies=[viewer], summary="One workflow")
async def get_workflow(request: Request, wid: int = Path(ge=1)) -> dict[str, Any]:
    flows = _flows(request)
    wf = await run_in_threadpool(flows.get, wid)
    if wf is None:
        raise HTTPException(404, f"no remediation #{wid}")
    return wf


@router.post("/remediations/{wid}/approve", response_model=Workflow, summary="Approve the rung a workflow waits on")
async def approve(request: Request, body: ApproveIn, wid: int = Path(ge=1),
                  who: Principal = operator) -> dict[str, Any]:
    c = _controller(request)
    try:
        await c.approve(wid, f"api:{who.name}", body.comment)
    except KeyError:
        raise HTTPException(404, f"no open remediation #{wid}") from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return await get_workflow(request, wid)


@router.get("/remediation/status", dependencies=[viewer],
            summary="Automation switches, breaker, caps, MTTR and per-phase durations")
async def status(request: Request) -> dict[str, Any]:
    c = request.app.state.remediation
    if c is None:
        return {"enabled": False, "paused": False, "breaker": {"tripped": False}, "active": 0,
                "waiting_approval": 0}
    return {"enabled": True, **c.status()}


@router.post("/remediation/pause", summary="Pause all automation (audited)")
async def pause(request: Request, body: PauseIn, who: Principal = operator) -> dict[str, Any]:
    await _controller(request).pause(f"api:{who.name}", body.reason)
    return await status(request)


@router.post("/remediation/resume", summary="Resume automation (audited)")
async def resume(request: Request, who: Principal = operator) -> dict[str, Any]:
    await _controller(request).resume(f"api:{who.name}")
    return await status(request)


@router.post("/remediation/reset-breaker", summary="Reset a tripped circuit breaker (audited)")
async def reset_breaker(request: Request, who: Principal = operator) -> dict[str, Any]:
    await _controller(request).reset_breaker(f"api:{who.name}")
    return await status(request)


@router.get("/rma", dependencies=[viewer], summary="RMA records, newest first")
async def list_rma(request: Request, node: str | None = Query(None, max_length=200),
                   limit: int = Query(200, ge=1, le=5000)) -> list[dict[str, Any]]:
    flows = _flows(request)
    return await run_in_threadpool(lambda: flows.rmas(node, limit))


@router.get("/rma/{rid}", dependencies=[viewer], summary="One RMA record with its evidence bundle")
async def get_rma(request: Request, rid: int = Path(ge=1)) -> dict[str, Any]:
    flows = _flows(request)
    rec = await run_in_threadpool(flows.rma, rid)
    if rec is None:
        raise HTTPException(404, f"no RMA record #{rid}")
    return rec


async def _bmc_call(request: Request, name: str, who: Principal, what: str, reason: str | None,
                    call: Any) -> Any:
    """Run one operator action on a node's BMC: the node must exist; the outcome is audited either way."""
    store = request.app.state.store
    executor = request.app.state.executor
    if store is None or executor is None:
        raise HTTPException(503, "no fleet store")
    from redfleet.remediation.executors import ExecutorError
    from redfleet.store import NotFoundError

    try:
        await run_in_threadpool(store.node, name)
    except NotFoundError:
        raise HTTPException(404, f"no node {name!r}") from None
    actor = f"api:{who.name}"
    why = reason or "operator request"
    try:
        result = await call(executor, actor, why)
    except Exception as exc:
        msg = str(exc) if isinstance(exc, ExecutorError) else (getattr(exc, "message", None) or str(exc))
        await run_in_threadpool(lambda: store.audit(f"node.{what.split()[0]}", name, reason=why, actor=actor,
                                                    result="error", details={"what": what, "error": msg}))
        raise HTTPException(502, msg if isinstance(exc, ExecutorError) else
                            f"{name}: the BMC refused {what}: {msg}") from None
    await run_in_threadpool(lambda: store.audit(f"node.{what.split()[0]}", name, reason=why, actor=actor,
                                                details={"what": what, "result": result}))
    return result


@router.post("/nodes/{name}/boot", responses=BMC_ERRORS,
             summary="Boot override on a node (PXE, disk, virtual CD...; once or continuous) (operator; audited)")
async def node_boot(request: Request, body: BootIn, name: str = Path(max_length=200),
                    who: Principal = operator) -> dict[str, Any]:
    boot = await _bmc_call(request, name, who, f"boot {body.target}", body.reason,
                           lambda ex, actor, why: ex.boot(name, body.target, once=body.once, actor=actor, reason=why))
    return {"node": name, "target": body.target, "once": body.once, "boot": boot,
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


@router.post("/nodes/{name}/power", responses=BMC_ERRORS,
             summary="Power action on a node through its BMC (operator; audited)")
async def node_power(request: Request, body: PowerIn, name: str = Path(max_length=200),
                     who: Principal = operator) -> dict[str, Any]:
    used = await _bmc_call(request, name, who, f"power {body.action}", body.reason,
                           lambda ex, actor, why: ex.power(name, body.action, actor=actor, reason=why))
    return {"node": name, "action": body.action, "reset_type": used,
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
