"""Profile conformance, read side (``redfleet validate --db`` writes it; :mod:`redfleet.store.profiles` keeps it).

* ``GET /api/v1/profiles/conformance?profile=`` — the newest run of every (node, profile): summary, the platform
  (vendor, model, BMC firmware) and the failing requirements; plus the same runs grouped per platform.
* ``GET /api/v1/profiles/nodes/{node}?profile=`` — one node: its newest run with every failing requirement, its
  run history (summaries) and the drift between its last two runs.

Viewer role. An app without a store answers empty lists.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from redfleet.api.auth import require
from redfleet.profiles.report import platform_key, platform_summary
from redfleet.store.profiles import ProfileResultRow, profile_drift, profile_history

router = APIRouter(prefix="/profiles", tags=["profiles"], dependencies=[Depends(require("viewer"))])

FAIL_KEYS = ("resource", "uri", "property", "requirement", "found", "message")


def failing(results: dict[str, Any] | None, limit: int = 200) -> list[dict[str, Any]]:
    """The failing requirement rows of one stored run (the --json contract's ``results``), trimmed to what a
    table shows."""
    rows = (results or {}).get("results") or []
    out = [{k: r.get(k) for k in FAIL_KEYS} for r in rows if isinstance(r, dict) and r.get("verdict") == "fail"]
    return out[:limit]


def _latest_rows(session: Session, profile: str | None) -> list[ProfileResultRow]:
    newest = (select(func.max(ProfileResultRow.id).label("id"))
              .group_by(ProfileResultRow.node, ProfileResultRow.profile_name))
    if profile is not None:
        newest = newest.where(ProfileResultRow.profile_name == profile)
    ids = select(newest.subquery().c.id)
    return list(session.scalars(select(ProfileResultRow).where(ProfileResultRow.id.in_(ids))
                                .order_by(ProfileResultRow.node, ProfileResultRow.profile_name)).all())


def _run_doc(row: ProfileResultRow, max_failing: int) -> dict[str, Any]:
    results = dict(row.results or {})
    vendor, model, firmware = platform_key(results)
    return {"id": row.id, "node": row.node, "profile": row.profile_name, "profile_version": row.profile_version,
            "mode": row.mode, "validated_at": row.validated_at.isoformat(),
            "summary": {"pass": row.passed, "warn": row.warned, "fail": row.failed, "not_tested": row.not_tested},
            "error": row.error, "vendor": vendor, "model": model, "firmware": firmware,
            "failing": failing(results, max_failing)}


@router.get("/conformance", summary="Newest conformance run per node and profile, and per vendor/model/firmware")
async def conformance(request: Request, profile: str | None = Query(None, max_length=200),
                      max_failing: int = Query(50, ge=0, le=10_000,
                                               description="failing requirements listed per node")) -> dict[str, Any]:
    store = request.app.state.store
    if store is None:
        return {"nodes": [], "platforms": []}

    def read(session: Session) -> dict[str, Any]:
        rows = _latest_rows(session, profile)
        targets = [dict(r.results or {}, summary={"pass": r.passed, "warn": r.warned, "fail": r.failed,
                                                  "not_tested": r.not_tested}, results=(r.results or {}).get(
            "results") or [], error=r.error) for r in rows]
        return {"nodes": [_run_doc(r, max_failing) for r in rows], "platforms": platform_summary(targets)}

    result: dict[str, Any] = await run_in_threadpool(store.transaction, read, write=False)
    return result


@router.get("/nodes/{node}", summary="One node's conformance: newest run's failures, run history, drift")
async def node_conformance(request: Request, node: str = Path(max_length=300),
                           profile: str | None = Query(None, max_length=200)) -> dict[str, Any]:
    store = request.app.state.store
    if store is None:
        return {"node": node, "latest": None, "history": [], "drift": None}

    def read(session: Session) -> dict[str, Any]:
        hist = profile_history(session, node, profile, limit=50)
        latest = None
        if hist:
            row = session.get(ProfileResultRow, hist[0].id)
            latest = _run_doc(row, 10_000) if row is not None else None
        return {"node": node, "latest": latest, "history": [h.to_dict() for h in hist],
                "drift": profile_drift(session, node, profile)}

    result: dict[str, Any] = await run_in_threadpool(store.transaction, read, write=False)
    return result
