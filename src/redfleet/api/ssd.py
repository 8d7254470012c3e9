"""HTTP API for NVMe SSD health: per-drive and fleet endpoints (mounted by ``redfleet serve``).

``router`` finds the fleet store through the app: ``app.state.ssd_session_factory`` (a callable returning a
SQLAlchemy ``Session``) if set, else ``app.state.store`` (a :class:`~redfleet.store.FleetStore`), else
``app.state.db_engine`` (an ``Engine``). ``make_router(session_factory=…, thresholds=…)`` builds a router bound
to a given factory instead. Scoring thresholds: ``app.state.ssd_thresholds`` (a ``Thresholds``) or defaults.

Endpoints (prefix ``/ssd``):

* ``GET  /ssd/drives`` — the fleet ranked by risk (filters: ``recommendation``, ``node_id``; ``limit``, ``days``)
* ``GET  /ssd/drives/{drive_id}`` — one drive: risk, recommendation, reasons, latest levels and fields
* ``GET  /ssd/drives/{drive_id}/history`` — its samples (``since`` ISO time, ``limit``)
* ``POST /ssd/drives/{drive_id}/samples`` — record a reading: JSON ``{"collected_at"?, "node_id"?, "smart"?,
  "ocp"?}`` where each part is nvme-cli / smartctl JSON or a field dict; returns the new assessment
* ``POST /ssd/drives/{drive_id}/raw?collected_at=…`` — record a raw 512-byte 02h or C0h log (octet-stream)
* ``GET  /ssd/budget?k=5`` — the k drives to replace this week
* ``POST /ssd/score`` — score readings without storing them (a sample or a list of samples)

Invalid logs answer 422 with ``{"detail": "<the reason>"}``; an unknown drive 404; no store configured 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from redfleet.predict.fleet import rank, replacement_budget, score_fleet
from redfleet.predict.loader import Sample, load_bytes, parse_time, sample_from_decoded, sample_from_record
from redfleet.predict.logs import LogFormatError, decode_raw
from redfleet.predict.scoring import Assessment, Thresholds, score_history
from redfleet.store.ssd import SsdDrive, append_sample, fleet_histories, read_history
from redfleet.store.ssd import list_drives as store_drives

SessionFactory = Callable[[], Session]



# Trends look back at most ten years: a larger window is no drive's history (and overflows datetime).
MAX_DAYS = 3650

def _factory_from_app(request: Request) -> SessionFactory:
    state = request.app.state
    factory = getattr(state, "ssd_session_factory", None)
    if factory is not None:
        return factory
    store = getattr(state, "store", None)
    engine = getattr(store, "engine", None) if store is not None else getattr(state, "db_engine", None)
    if engine is None:
        raise HTTPException(503, "no fleet store is configured for SSD health")
    maker = sessionmaker(engine, expire_on_commit=False)
    state.ssd_session_factory = maker
    return maker


def _thresholds(request: Request) -> Thresholds:
    th = getattr(request.app.state, "ssd_thresholds", None)
    return th if isinstance(th, Thresholds) else Thresholds()


def make_router(session_factory: SessionFactory | None = None, thresholds: Thresholds | None = None) -> APIRouter:
    """The SSD router; without arguments it finds the store and thresholds on ``app.state``."""
    r = APIRouter(prefix="/ssd", tags=["ssd"])

    def get_session(request: Request) -> Iterator[Session]:
        factory = session_factory or _factory_from_app(request)
        with factory() as session:
            yield session

    def get_thresholds(request: Request) -> Thresholds:
        return thresholds or _thresholds(request)

    def assess(session: Session, drive_id: str, th: Thresholds, days: float | None = None) -> Assessment:
        drive = session.get(SsdDrive, drive_id)
        if drive is None:
            raise HTTPException(404, f"no SSD health samples for drive {drive_id!r}")
        since = datetime.now(UTC) - timedelta(days=days) if days else None
        points = read_history(session, drive_id, since=since) or read_history(session, drive_id)[-1:]
        if not points:
            raise HTTPException(404, f"no SSD health samples for drive {drive_id!r}")
        a = score_history(points, th, drive_id=drive_id)
        a.info.update({k: v for k, v in (("node_id", drive.node_id), ("slot", drive.slot), ("model", drive.model),
                                         ("serial", drive.serial), ("firmware", drive.firmware)) if v})
        return a

    def record(session: Session, drive_id: str, sample: Sample, th: Thresholds) -> dict[str, Any]:
        # SQLite answers a deferred read-then-write transaction with "database is locked" at once when another
        # writer holds the lock (whatever the busy timeout): roll back and redo the whole write, a bounded number
        # of times, as FleetStore.transaction does.
        from sqlalchemy.exc import OperationalError

        for attempt in range(6):
            try:
                append_sample(session, drive_id, sample.collected_at, smart=sample.smart or None,
                              ocp=sample.ocp or None, source="api", node_id=sample.node_id,
                              model=sample.device.get("model"), serial=sample.device.get("serial"),
                              firmware=sample.device.get("firmware"), slot=sample.device.get("slot"))
                session.commit()
                break
            except OperationalError as exc:
                session.rollback()
                if "locked" not in str(exc).lower() or attempt == 5:
                    raise
                time.sleep(0.05 * 2 ** attempt)
        return assess(session, drive_id, th).as_dict(with_levels=True)

    @r.get("/drives")
    def list_drives(
        session: Session = Depends(get_session),
        th: Thresholds = Depends(get_thresholds),
        recommendation: Literal["REPLACE", "WATCH", "MONITOR"] | None = None,
        node_id: str | None = None,
        days: float = Query(60, gt=0, le=MAX_DAYS, description="history used for trends (days back)"),
        limit: int = Query(500, ge=1, le=100_000),
    ) -> dict[str, Any]:
        drives = store_drives(session, node_id=node_id)
        info = {d.drive_id: {"node_id": d.node_id, "slot": d.slot, "model": d.model} for d in drives}
        since = datetime.now(UTC) - timedelta(days=days)
        histories = fleet_histories(session, since=since, drive_ids=list(info))
        stale = [d for d in info if d not in histories]
        if stale:  # no sample within the window: score the latest one
            for drive_id, points in fleet_histories(session, drive_ids=stale).items():
                histories[drive_id] = points[-1:]
        ranked = score_fleet(histories, th, info)
        counts = {k: 0 for k in ("REPLACE", "WATCH", "MONITOR")}
        for a in ranked:
            counts[a.recommendation] += 1
        if recommendation:
            ranked = [a for a in ranked if a.recommendation == recommendation]
        return {"count": len(ranked), "counts": counts,
                "drives": [dict(a.as_dict(), rank=i + 1) for i, a in enumerate(ranked[:limit])]}

    @r.get("/drives/{drive_id}")
    def get_drive(drive_id: str, session: Session = Depends(get_session), th: Thresholds = Depends(get_thresholds),
                  days: float = Query(60, gt=0, le=MAX_DAYS)) -> dict[str, Any]:
        a = assess(session, drive_id, th, days)
        doc = a.as_dict(with_levels=True)
        latest = read_history(session, drive_id)[-1]
        doc["latest"] = {"collected_at": latest.collected_at.isoformat(), "smart": latest.smart, "ocp": latest.ocp}
        return doc

    @r.get("/drives/{drive_id}/history")
    def get_history(drive_id: str, session: Session = Depends(get_session), since: str | None = None,
                    limit: int = Query(1000, ge=1, le=100_000)) -> dict[str, Any]:
        if session.get(SsdDrive, drive_id) is None:
            raise HTTPException(404, f"no SSD health samples for drive {drive_id!r}")
        try:
            start = parse_time(since, "since") if since else None
        except LogFormatError as exc:
            raise HTTPException(422, str(exc)) from None
        points = read_history(session, drive_id, since=start)[-limit:]
        return {"drive_id": drive_id, "count": len(points),
                "samples": [{"collected_at": p.collected_at.isoformat(), "source": p.source, "smart": p.smart,
                             "ocp": p.ocp} for p in points]}

    @r.post("/drives/{drive_id}/samples", status_code=201)
    def post_sample(drive_id: str, body: dict[str, Any] = Body(...), session: Session = Depends(get_session),
                    th: Thresholds = Depends(get_thresholds)) -> dict[str, Any]:
        try:
            sample = sample_from_record({**body, "drive_id": drive_id}, drive_id, datetime.now(UTC), "api")
        except (LogFormatError, KeyError) as exc:
            raise HTTPException(422, str(exc)) from None
        return record(session, drive_id, sample, th)

    @r.post("/drives/{drive_id}/raw", status_code=201)
    async def post_raw(drive_id: str, request: Request, collected_at: str | None = None,
                       node_id: str | None = None, session: Session = Depends(get_session),
                       th: Thresholds = Depends(get_thresholds)) -> dict[str, Any]:
        data = await request.body()
        try:
            when = parse_time(collected_at) if collected_at else datetime.now(UTC)
            sample = sample_from_decoded(decode_raw(data), drive_id=drive_id, collected_at=when, source="api")
        except LogFormatError as exc:
            raise HTTPException(422, str(exc)) from None
        sample.node_id = node_id
        return record(session, drive_id, sample, th)

    @r.get("/budget")
    def get_budget(session: Session = Depends(get_session), th: Thresholds = Depends(get_thresholds),
                   k: int = Query(5, ge=0, le=10_000), one_per_node: bool = False,
                   days: float = Query(60, gt=0, le=MAX_DAYS)) -> dict[str, Any]:
        info = {d.drive_id: {"node_id": d.node_id, "slot": d.slot, "model": d.model} for d in store_drives(session)}
        histories = fleet_histories(session, since=datetime.now(UTC) - timedelta(days=days))
        return replacement_budget(score_fleet(histories, th, info), k, one_per_node=one_per_node).as_dict()

    @r.post("/score")
    def post_score(body: Any = Body(...), th: Thresholds = Depends(get_thresholds)) -> dict[str, Any]:
        """Score readings without storing them: one sample object, a list of them, or one nvme-cli/smartctl
        document. Samples of one drive id form its history."""
        import json

        if not isinstance(body, dict | list):  # e.g. a text/plain body: FastAPI hands it over undecoded
            raise HTTPException(422, "the body must be a JSON object or array of SSD health readings")
        try:
            samples = load_bytes(json.dumps(body).encode(), name="request body", drive_id=None)
        except LogFormatError as exc:
            raise HTTPException(422, str(exc)) from None
        groups: dict[str, list[Sample]] = {}
        for s in samples:
            groups.setdefault(s.drive_id, []).append(s)
        assessments = rank(score_history(points, th, drive_id=d) for d, points in groups.items())
        return {"drives": [a.as_dict(with_levels=True) for a in assessments]}

    return r


router = make_router()
