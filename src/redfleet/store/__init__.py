"""The fleet store: nodes, BMC endpoints and TLS pins, encrypted credentials, inventory history, events, audit.

SQLite (embedded default, ``$REDFLEET_DB`` or ``~/.local/share/redfleet/redfleet.db``) or PostgreSQL
(``postgresql+psycopg://...``); the schema is migrated by Alembic on open. See :class:`FleetStore`.
"""

from __future__ import annotations

from redfleet.store.crypto import KeyRing, Secret
from redfleet.store.errors import CredentialKeyError, NotFoundError, PinMismatchError, StoreError
from redfleet.store.repository import (
    AuditRecord,
    BmcCredentials,
    Change,
    EventRecord,
    FleetStore,
    ImportResult,
    NodeRecord,
    PendingPin,
    SnapshotInfo,
    StorePinStore,
    endpoint_origin,
)

__all__ = [
    "AuditRecord",
    "BmcCredentials",
    "Change",
    "CredentialKeyError",
    "EventRecord",
    "FleetStore",
    "ImportResult",
    "KeyRing",
    "NodeRecord",
    "NotFoundError",
    "PendingPin",
    "PinMismatchError",
    "Secret",
    "SnapshotInfo",
    "StoreError",
    "StorePinStore",
    "endpoint_origin",
]
