"""Fleet views over drive assessments: the ranking, and the replacement budget ("the k drives to replace
this week")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redfleet.predict.features import PointLike
from redfleet.predict.scoring import SEVERITY, Assessment, Thresholds, score_history


def rank(assessments: Iterable[Assessment]) -> list[Assessment]:
    """Most urgent first: REPLACE before WATCH before MONITOR, then by risk, then by drive id (stable)."""
    return sorted(assessments, key=lambda a: (-a.severity, -a.risk, a.drive_id))


def score_fleet(histories: Mapping[str, Sequence[PointLike]], thresholds: Thresholds | None = None,
                info: Mapping[str, Mapping[str, Any]] | None = None) -> list[Assessment]:
    """Score every drive's history and rank them. ``info`` adds per-drive details (node, slot, model…)."""
    out = []
    for drive_id, points in histories.items():
        if not points:
            continue
        a = score_history(points, thresholds, drive_id=drive_id)
        if info and drive_id in info:
            a.info.update({k: v for k, v in info[drive_id].items() if v is not None})
        out.append(a)
    return rank(out)


@dataclass
class Budget:
    """The drives to replace within one budget period, and what had to wait."""

    k: int
    selected: list[Assessment] = field(default_factory=list)
    deferred: list[Assessment] = field(default_factory=list)  # REPLACE/WATCH drives beyond k
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "counts": self.counts,
            "replace": [dict(a.as_dict(), rank=i + 1) for i, a in enumerate(self.selected)],
            "deferred": [a.as_dict() for a in self.deferred],
        }


def replacement_budget(assessments: Iterable[Assessment], k: int, *, include_watch: bool = True,
                       one_per_node: bool = False) -> Budget:
    """The k drives to replace this period: REPLACE drives by risk, then (if room) the riskiest WATCH drives.

    ``one_per_node`` keeps at most one drive per node (``info["node_id"]``) in the selection, so that one
    maintenance window per node suffices; the others are deferred.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    ranked = rank(assessments)
    counts = {name: 0 for name in SEVERITY}
    for a in ranked:
        counts[a.recommendation] += 1
    eligible = [a for a in ranked if a.recommendation == "REPLACE" or (include_watch and a.recommendation == "WATCH")]
    budget = Budget(k=k, counts=counts)
    nodes: set[Any] = set()
    for a in eligible:
        node = a.info.get("node_id")
        if len(budget.selected) < k and not (one_per_node and node is not None and node in nodes):
            budget.selected.append(a)
            if node is not None:
                nodes.add(node)
        else:
            budget.deferred.append(a)
    return budget
