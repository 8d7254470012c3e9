"""Drive health history: one row per NVMe drive and one per health sample (SMART 02h and/or OCP C0h fields).

The tables hang off the shared :class:`~redfleet.store.base.Base`, so the fleet store's Alembic history covers
them. Columns are kept stable; the decoded log fields travel as JSON (canonical nvme-cli snake_case keys, 128-bit
counters as integers), so a new field in a later OCP spec version needs no migration.

Samples come from the in-band agent, the simulator, files (``redfleet ssd score``) or the API; ``source`` says
which. A sample is identified by ``(drive_id, collected_at)``: appending the same instant again replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from redfleet.store.base import Base

SOURCES = ("agent", "sim", "file", "api")


class SsdDrive(Base):
    """One NVMe drive, keyed by a fleet-wide id (the serial number where known, else ``node:slot``)."""

    __tablename__ = "ssd_drives"

    drive_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str | None] = mapped_column(String(128), index=True)
    slot: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128))
    firmware: Mapped[str | None] = mapped_column(String(64))
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SsdHealthSample(Base):
    """One reading of a drive's health logs at one instant."""

    __tablename__ = "ssd_health_samples"
    __table_args__ = (
        UniqueConstraint("drive_id", "collected_at", name="uq_ssd_health_samples_drive_time"),
        Index("ix_ssd_health_samples_time", "collected_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    drive_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("ssd_drives.drive_id", ondelete="CASCADE"), nullable=False, index=True
    )
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="file")
    # Decoded NVMe SMART / Health (02h) fields, nvme-cli snake_case keys; None when not read.
    smart: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Decoded OCP SMART / Health Information Extended (C0h) fields, nvme-cli snake_case keys; None if absent.
    ocp: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    log_page_version: Mapped[int | None] = mapped_column(Integer)


@dataclass
class HistoryPoint:
    """A sample as read back: timezone-aware UTC time and the two field dicts."""

    drive_id: str
    collected_at: datetime
    smart: dict[str, Any] = field(default_factory=dict)
    ocp: dict[str, Any] = field(default_factory=dict)
    source: str = "file"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; everything is stored as UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _jsonable(fields: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if fields is None:
        return None
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, bytes):
            value = value.hex()
        out[str(key)] = value
    return out


def upsert_drive(
    session: Session,
    drive_id: str,
    *,
    node_id: str | None = None,
    slot: str | None = None,
    model: str | None = None,
    serial: str | None = None,
    firmware: str | None = None,
    seen_at: datetime | None = None,
) -> SsdDrive:
    """Create the drive row or update what is given (None leaves a column as it is)."""
    drive = session.get(SsdDrive, drive_id)
    if drive is None:
        drive = SsdDrive(drive_id=drive_id)
        session.add(drive)
    for name, value in (("node_id", node_id), ("slot", slot), ("model", model), ("serial", serial),
                        ("firmware", firmware)):
        if value is not None:
            setattr(drive, name, value)
    if seen_at is not None:
        seen = _utc(seen_at)
        if drive.first_seen is None or _utc(drive.first_seen) > seen:
            drive.first_seen = seen
        if drive.last_seen is None or _utc(drive.last_seen) < seen:
            drive.last_seen = seen
    return drive


def append_sample(
    session: Session,
    drive_id: str,
    collected_at: datetime,
    *,
    smart: Mapping[str, Any] | None = None,
    ocp: Mapping[str, Any] | None = None,
    source: str = "file",
    node_id: str | None = None,
    slot: str | None = None,
    model: str | None = None,
    serial: str | None = None,
    firmware: str | None = None,
) -> SsdHealthSample:
    """Record one reading; the drive row is created or refreshed. Same drive and instant again: replaced.

    The caller commits. ``smart``/``ocp`` are decoded field dicts (see ``redfleet.predict``).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if smart is None and ocp is None:
        raise ValueError("a sample needs SMART (02h) fields, OCP (C0h) fields, or both")
    when = _utc(collected_at)
    upsert_drive(session, drive_id, node_id=node_id, slot=slot, model=model, serial=serial, firmware=firmware,
                 seen_at=when)
    session.flush()
    existing = session.scalars(
        select(SsdHealthSample).where(SsdHealthSample.drive_id == drive_id, SsdHealthSample.collected_at == when)
    ).first()
    row = existing or SsdHealthSample(drive_id=drive_id, collected_at=when)
    row.source = source
    row.smart = _jsonable(smart)
    row.ocp = _jsonable(ocp)
    version = (ocp or {}).get("log_page_version")
    row.log_page_version = int(version) if version is not None else None
    if existing is None:
        session.add(row)
    session.flush()
    return row


def read_history(
    session: Session, drive_id: str, *, since: datetime | None = None, until: datetime | None = None
) -> list[HistoryPoint]:
    """A drive's samples, oldest first."""
    query = select(SsdHealthSample).where(SsdHealthSample.drive_id == drive_id)
    if since is not None:
        query = query.where(SsdHealthSample.collected_at >= _utc(since))
    if until is not None:
        query = query.where(SsdHealthSample.collected_at <= _utc(until))
    rows = session.scalars(query.order_by(SsdHealthSample.collected_at)).all()
    return [
        HistoryPoint(drive_id=r.drive_id, collected_at=_utc(r.collected_at), smart=dict(r.smart or {}),
                     ocp=dict(r.ocp or {}), source=r.source)
        for r in rows
    ]


def list_drives(session: Session, *, node_id: str | None = None) -> list[SsdDrive]:
    query = select(SsdDrive)
    if node_id is not None:
        query = query.where(SsdDrive.node_id == node_id)
    return list(session.scalars(query.order_by(SsdDrive.drive_id)).all())


def fleet_histories(
    session: Session, *, since: datetime | None = None, drive_ids: Iterable[str] | None = None
) -> dict[str, list[HistoryPoint]]:
    """Every drive's samples (optionally since a time, or for some drives), keyed by drive id, oldest first."""
    query = select(SsdHealthSample)
    if since is not None:
        query = query.where(SsdHealthSample.collected_at >= _utc(since))
    if drive_ids is not None:
        query = query.where(SsdHealthSample.drive_id.in_(list(drive_ids)))
    out: dict[str, list[HistoryPoint]] = {}
    for r in session.scalars(query.order_by(SsdHealthSample.drive_id, SsdHealthSample.collected_at)).all():
        out.setdefault(r.drive_id, []).append(
            HistoryPoint(drive_id=r.drive_id, collected_at=_utc(r.collected_at), smart=dict(r.smart or {}),
                         ocp=dict(r.ocp or {}), source=r.source)
        )
    return out
