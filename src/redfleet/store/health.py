"""Health history: every change of a node's health state as ``redfleet serve`` judged it (owner: serve).

Rows are written in batches off the request path (see :class:`redfleet.telemetry.persist.Persister`); the node's
``nodes.health`` column follows the newest state so ``redfleet fleet list`` shows it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from redfleet.store.base import Base
from redfleet.store.models import JSONType, Node, UTCDateTime, utcnow


class HealthChangeRow(Base):
    __tablename__ = "health_changes"
    __table_args__ = (Index("ix_health_changes_node_at", "node", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    old: Mapped[str] = mapped_column(String(20))
    new: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)


@dataclass(frozen=True)
class HealthChangeRecord:
    id: int
    node: str
    at: datetime
    old: str
    new: str
    reasons: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "at": self.at.isoformat(), "old": self.old, "new": self.new,
                "reasons": self.reasons}


def add_health_changes(session: Session, changes: Iterable[tuple[str, datetime, str, str, list[dict[str, Any]]]],
                       ) -> int:
    """Insert (node, at, old, new, reasons) rows and set ``nodes.health`` to each node's newest state."""
    rows = [HealthChangeRow(node=n, at=at, old=old, new=new, reasons=reasons) for n, at, old, new, reasons in changes]
    session.add_all(rows)
    latest: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.at):
        latest[r.node] = r.new
    for state in set(latest.values()):
        names = [n for n, s in latest.items() if s == state]
        for i in range(0, len(names), 500):
            session.execute(update(Node).where(Node.name.in_(names[i:i + 500])).values(health=state))
    return len(rows)


def health_history(session: Session, node: str | None = None, *, since: datetime | None = None,
                   limit: int = 100) -> list[HealthChangeRecord]:
    """Changes, newest first."""
    q = select(HealthChangeRow)
    if node is not None:
        q = q.where(HealthChangeRow.node == node)
    if since is not None:
        q = q.where(HealthChangeRow.at >= since)
    rows: Sequence[HealthChangeRow] = session.scalars(
        q.order_by(HealthChangeRow.at.desc(), HealthChangeRow.id.desc()).limit(limit)).all()
    return [HealthChangeRecord(r.id, r.node, r.at, r.old, r.new, list(r.reasons or [])) for r in rows]
