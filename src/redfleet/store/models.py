"""The fleet store's tables (SQLAlchemy 2 typed declarative on the shared :class:`~redfleet.store.base.Base`).

Every table here is created by the Alembic history in ``redfleet/store/migrations``; a change to a table needs a
new revision (``python -m redfleet.store revision -m "..." --autogenerate``), never an edit of an old one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from redfleet.store.base import Base

# JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both back ends (SQLite stores naive text; we put the UTC back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Credential(Base):
    """A named BMC login; the password is a Fernet token (``secret``), never plaintext."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    username: Mapped[str] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(Text)  # Fernet token of the password
    key_id: Mapped[str] = mapped_column(String(32))  # which key encrypted it (not secret: a hash prefix)
    source: Mapped[str] = mapped_column(String(300))  # where the password came from: inline, env:NAME, file:PATH
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # the token is left out too
        return f"Credential(name={self.name!r}, username={self.username!r}, secret=<redacted>)"


class BmcEndpoint(Base):
    """One BMC as reached over the network; its TLS pin (and a new certificate awaiting acceptance) lives here.

    ``origin`` is the key pins are kept under (``https://host:port``, see :func:`redfleet.redfish.tls.bmc_key`;
    ``ipmi://host:623``); ``url`` is the base URL as the fleet file gave it. Several nodes may share an endpoint (an
    enclosure manager); an endpoint may exist without nodes (a pin learned by an ad-hoc command).
    """

    __tablename__ = "bmc_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(300), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    credential_id: Mapped[int | None] = mapped_column(ForeignKey("credentials.id", ondelete="SET NULL"), index=True)
    tls_fingerprint: Mapped[str | None] = mapped_column(String(200))  # "sha256:<hex>" pinned
    tls_pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tls_pinned_by: Mapped[str | None] = mapped_column(String(200))
    tls_pending_fingerprint: Mapped[str | None] = mapped_column(String(200))  # seen, refused, awaiting an operator
    tls_pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    vendor: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    firmware_version: Mapped[str | None] = mapped_column(String(200))
    redfish_version: Mapped[str | None] = mapped_column(String(50))
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    credential: Mapped[Credential | None] = relationship(lazy="joined")
    nodes: Mapped[list[Node]] = relationship(back_populates="bmc")


class Node(Base):
    """A machine in the fleet."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    bmc_id: Mapped[int | None] = mapped_column(ForeignKey("bmc_endpoints.id", ondelete="RESTRICT"), index=True)
    rack: Mapped[str | None] = mapped_column(String(100), index=True)
    position: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    flavor: Mapped[str | None] = mapped_column(String(100))
    vendor: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(200))
    host_address: Mapped[str | None] = mapped_column(String(300))
    # Lifecycle: "active" (default), "maintenance", "drained", "retired", ... — set by later areas; free text here.
    state: Mapped[str] = mapped_column(String(50), default="active")
    state_reason: Mapped[str | None] = mapped_column(Text)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    health: Mapped[str | None] = mapped_column(String(50))  # last rolled-up health: OK / Warning / Critical
    last_inventory_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    bmc: Mapped[BmcEndpoint | None] = relationship(back_populates="nodes", lazy="joined")


class InventorySnapshot(Base):
    """One distinct inventory of a node: the normalized model as JSON.

    A new row is written when the hardware identity changes (``digest`` covers everything but volatile readings);
    a collection that finds the same hardware only moves ``last_seen_at`` and refreshes ``data``. So a snapshot
    stands for the period ``collected_at .. last_seen_at``.
    """

    __tablename__ = "inventory_snapshots"
    __table_args__ = (Index("ix_inventory_snapshots_node_collected", "node_id", "collected_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    digest: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)


class InventoryChange(Base):
    """One human-readable difference between two snapshots of a node (a component added, removed, replaced, or a
    field of it changed)."""

    __tablename__ = "inventory_changes"
    __table_args__ = (Index("ix_inventory_changes_node_detected", "node_id", "detected_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("inventory_snapshots.id", ondelete="CASCADE"), index=True)
    previous_snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_snapshots.id", ondelete="SET NULL"), index=True
    )
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    category: Mapped[str] = mapped_column(String(50))  # gpus, firmware, drives, ...
    component: Mapped[str] = mapped_column(String(300))  # the identity of the item within its category
    kind: Mapped[str] = mapped_column(String(20))  # added / removed / replaced / changed
    field: Mapped[str | None] = mapped_column(String(100))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Who changed what through the store, why, with what result, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str | None] = mapped_column(String(300), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(20))  # ok / error
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Event(Base):
    """Something a BMC, the agent or redfleet itself reported about a node (health/event work builds on this)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_node_at", "node_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(100))  # redfish-sel, redfish-sse, agent, redfleet, ...
    severity: Mapped[str] = mapped_column(String(20))  # OK / Warning / Critical
    message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
