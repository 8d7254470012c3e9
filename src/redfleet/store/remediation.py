"""Remediation's durable state (owner: redfleet.remediation): one workflow per node incident, its steps, the
automation switches (pause, circuit breaker) and RMA records.

The workflow row is the whole truth about where a remediation stands: ``phase`` + ``rung`` + ``attempt`` and the
``data`` scratch (what was issued when, what the node looked like before). A restarted ``serve`` reloads open rows
and carries on from there; a power action is written as *intended* before it is sent and *issued* after, so a crash
between the two is seen and never answered by a blind second power cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from redfleet.store.base import Base
from redfleet.store.models import JSONType, UTCDateTime, utcnow

OPEN_STATES = ("running", "waiting_approval", "paused")
FINAL_STATES = ("succeeded", "decommissioned", "failed")


class RemediationWorkflow(Base):
    __tablename__ = "remediation_workflows"
    __table_args__ = (Index("ix_remediation_workflows_node_started", "node", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(30), index=True)  # running | waiting_approval | paused | final states
    phase: Mapped[str] = mapped_column(String(30))  # cordon | drain | remediate | wait | gate | uncordon | ...
    rung: Mapped[str | None] = mapped_column(String(50))
    rung_index: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONType)  # {"action", "reasons": [...], "state"}
    wlm: Mapped[str] = mapped_column(String(30))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    cordon_ours: Mapped[bool | None] = mapped_column(Boolean)  # None: not cordoned yet
    approval: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # {"rung", "requested_at"} while waiting
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_rungs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    rma_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RemediationStep(Base):
    __tablename__ = "remediation_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("remediation_workflows.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))  # cordon, drain, gpu-reset, power-cycle, wait, gate, ...
    phase: Mapped[str] = mapped_column(String(30))
    rung: Mapped[str | None] = mapped_column(String(50))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(String(20))  # running | ok | failed | timeout | skipped | dry-run
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class RemediationControl(Base):
    """Fleet-wide switches, one row per key: ``paused`` and ``breaker``."""

    __tablename__ = "remediation_control"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class RmaRecord(Base):
    __tablename__ = "rma_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(200), index=True)
    workflow_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | shipped | closed
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
