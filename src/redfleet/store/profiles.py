"""Profile conformance history: every ``redfleet validate`` run of a node against an interoperability profile
(owner: profiles).

One row per (node, profile, run) with the pass / warn / fail / not-tested counts (as DMTF's rf_interop_validator
counts) and the whole per-requirement result (the ``--json`` contract of one target) as JSON. The dashboard reads the
newest run per node (:func:`latest_profile_runs`); drift after a firmware update is the difference between a node's
last two runs of the same profile (:func:`profile_drift`).

``node`` is the node's name as the fleet file gives it (or the URL / mockup folder of an ad-hoc target); it is not a
foreign key, so that results of BMCs not (yet) in the fleet store are kept too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from redfleet.store.base import Base
from redfleet.store.models import JSONType, UTCDateTime, utcnow


class ProfileResultRow(Base):
    __tablename__ = "profile_results"
    __table_args__ = (Index("ix_profile_results_node_profile_at", "node", "profile_name", "validated_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(300))
    profile_name: Mapped[str] = mapped_column(String(200))
    profile_version: Mapped[str] = mapped_column(String(50))
    mode: Mapped[str] = mapped_column(String(20))  # strict | dmtf
    validated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    passed: Mapped[int] = mapped_column("pass", Integer, default=0)
    warned: Mapped[int] = mapped_column("warn", Integer, default=0)
    failed: Mapped[int] = mapped_column("fail", Integer, default=0)
    not_tested: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # the target could not be read at all
    results: Mapped[dict[str, Any]] = mapped_column(JSONType)  # one target of the --json contract


@dataclass(frozen=True)
class ProfileRun:
    id: int
    node: str
    profile_name: str
    profile_version: str
    mode: str
    validated_at: datetime
    summary: dict[str, int]
    error: str | None
    results: dict[str, Any] | None  # None when listed without the per-requirement rows

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "node": self.node, "profile": f"{self.profile_name} {self.profile_version}",
               "profile_name": self.profile_name, "profile_version": self.profile_version, "mode": self.mode,
               "validated_at": self.validated_at.isoformat(), "summary": self.summary, "error": self.error}
        if self.results is not None:
            out["results"] = self.results
        return out


def _run(row: ProfileResultRow, with_results: bool = True) -> ProfileRun:
    summary = {"pass": row.passed, "warn": row.warned, "fail": row.failed, "not_tested": row.not_tested}
    return ProfileRun(row.id, row.node, row.profile_name, row.profile_version, row.mode, row.validated_at, summary,
                      row.error, dict(row.results) if with_results else None)


def save_profile_results(session: Session, targets: Iterable[dict[str, Any]], *, profile_name: str,
                         profile_version: str, mode: str, validated_at: datetime | None = None) -> list[int]:
    """Store one run per target (each a ``TargetResult.to_json()`` dict); returns the new row ids."""
    when = validated_at or utcnow()
    rows = []
    for t in targets:
        summary = t.get("summary") or {}
        rows.append(ProfileResultRow(
            node=str(t["target"]), profile_name=profile_name, profile_version=profile_version, mode=mode,
            validated_at=when, passed=int(summary.get("pass", 0)), warned=int(summary.get("warn", 0)),
            failed=int(summary.get("fail", 0)), not_tested=int(summary.get("not_tested", 0)),
            error=t.get("error"), results=t,
        ))
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def profile_history(session: Session, node: str, profile_name: str | None = None, *, limit: int = 20,
                    with_results: bool = False) -> list[ProfileRun]:
    """A node's runs, newest first (of one profile when ``profile_name`` is given)."""
    q = select(ProfileResultRow).where(ProfileResultRow.node == node)
    if profile_name is not None:
        q = q.where(ProfileResultRow.profile_name == profile_name)
    rows: Sequence[ProfileResultRow] = session.scalars(
        q.order_by(ProfileResultRow.validated_at.desc(), ProfileResultRow.id.desc()).limit(limit)).all()
    return [_run(r, with_results) for r in rows]


def latest_profile_runs(session: Session, profile_name: str | None = None) -> list[ProfileRun]:
    """The newest run of every (node, profile): what the dashboard shows; without the per-requirement rows."""
    newest = (select(ProfileResultRow.node, ProfileResultRow.profile_name,
                     func.max(ProfileResultRow.id).label("id"))
              .group_by(ProfileResultRow.node, ProfileResultRow.profile_name))
    if profile_name is not None:
        newest = newest.where(ProfileResultRow.profile_name == profile_name)
    ids = select(newest.subquery().c.id)
    rows = session.scalars(select(ProfileResultRow).where(ProfileResultRow.id.in_(ids))
                           .order_by(ProfileResultRow.node, ProfileResultRow.profile_name)).all()
    return [_run(r, with_results=False) for r in rows]


def profile_drift(session: Session, node: str, profile_name: str | None = None) -> dict[str, Any] | None:
    """What changed between a node's last two runs of a profile (the newest profile run when none is named):
    requirements whose verdict (or value found, when not passing) changed, and the service's firmware before and
    after. None when there are fewer than two runs."""
    if profile_name is None:
        newest = profile_history(session, node, limit=1)
        if not newest:
            return None
        profile_name = newest[0].profile_name
    runs = profile_history(session, node, profile_name, limit=2, with_results=True)
    if len(runs) < 2:
        return None
    from redfleet.profiles.report import drift

    after, before = runs
    assert before.results is not None and after.results is not None
    return {
        "node": node, "profile": profile_name,
        "before": {"id": before.id, "validated_at": before.validated_at.isoformat(), "summary": before.summary,
                   "service": before.results.get("service") or {}},
        "after": {"id": after.id, "validated_at": after.validated_at.isoformat(), "summary": after.summary,
                  "service": after.results.get("service") or {}},
        "changes": drift(before.results, after.results),
    }
