"""The fleet store's API: :class:`FleetStore`.

It is synchronous (SQLAlchemy 2, one short transaction per call, safe to share between threads). From async code
call it through a thread so the event loop never waits on the database::

    changes = await asyncio.to_thread(store.record_inventory, "node-00001", inventory)

The pin store (:meth:`FleetStore.pin_store`) is the exception: the Redfish client calls it synchronously on the loop,
so it answers ``get`` from memory and only goes to the database on a miss or a write.

Every change made through the store writes an audit row (who, what, why, result, when). A call that fails writes
nothing but that audit row: each write is one transaction, retried a few times when SQLite is busy or PostgreSQL
reports a serialization failure, deadlock or a concurrent insert of the same key.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Engine, String, delete, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from redfleet.model.fleetfile import FleetFile, FleetFileError, FleetNode, load_fleet_file
from redfleet.store.crypto import KeyRing, Secret
from redfleet.store.db import WRITE, create_store_engine, is_sqlite
from redfleet.store.diff import diff_inventories, digest
from redfleet.store.errors import CredentialKeyError, NotFoundError, PinMismatchError, StoreError
from redfleet.store.migrate import upgrade
from redfleet.store.models import (
    AuditEntry,
    BmcEndpoint,
    Credential,
    Event,
    InventoryChange,
    InventorySnapshot,
    Node,
    utcnow,
)
from redfleet.store.paths import default_db_url, resolve_db_url

log = logging.getLogger(__name__)
T = TypeVar("T")

SEVERITIES = ("OK", "Warning", "Critical")


# --------------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class NodeRecord:
    """A node as the store holds it (a plain value: safe to keep after the call)."""

    name: str
    bmc_url: str | None
    credential: str | None
    rack: str | None
    position: int | None
    tags: tuple[str, ...]
    flavor: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    host_address: str | None
    state: str
    state_reason: str | None
    health: str | None
    tls_fingerprint: str | None
    tls_pending_fingerprint: str | None
    last_inventory_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tags"] = list(self.tags)
        for key in ("last_inventory_at", "created_at", "updated_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass(frozen=True)
class BmcCredentials:
    """What the client logs in with. ``password`` is a :class:`Secret`: call ``.reveal()`` at the point of use."""

    name: str
    username: str
    password: Secret

    def __repr__(self) -> str:
        return f"BmcCredentials(name={self.name!r}, username={self.username!r}, password=<redacted>)"


@dataclass(frozen=True)
class Change:
    """One readable difference between two inventories of a node (see :mod:`redfleet.store.diff`)."""

    node: str
    at: datetime
    category: str
    component: str
    kind: str  # added / removed / replaced / changed
    summary: str
    field: str | None = None
    old: str | None = None
    new: str | None = None
    snapshot_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    node: str
    collected_at: datetime
    last_seen_at: datetime
    digest: str


@dataclass(frozen=True)
class EventRecord:
    id: int
    node: str | None
    at: datetime
    source: str
    severity: str
    message_id: str | None
    message: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    reason: str | None
    result: str
    details: dict[str, Any] | None


@dataclass(frozen=True)
class PendingPin:
    """A BMC that presented a certificate other than its pin; refused until an operator accepts it."""

    origin: str
    nodes: tuple[str, ...]
    pinned: str | None
    pending: str
    since: datetime | None


@dataclass
class ImportResult:
    """What ``import_fleet`` did, by node name (and credential name)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Nodes in the store but not in the file: kept (importing never deletes), listed so an operator can see them.
    absent: list[str] = field(default_factory=list)
    credentials_added: list[str] = field(default_factory=list)
    credentials_updated: list[str] = field(default_factory=list)
    # node -> the fields that changed ("rack", "bmc_url", ...), for updated nodes.
    changes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.updated or self.credentials_added or self.credentials_updated)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=65536)
def endpoint_origin(url: str) -> str:
    """The key an endpoint (and its TLS pin) is stored under: ``https://host:port``, ``ipmi://host:623``."""
    if url.startswith("ipmi://"):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        return f"ipmi://{host}:{parts.port or 623}"
    from redfleet.redfish.tls import bmc_key

    return bmc_key(url)


def _normalize_fp(fp: str) -> str:
    from redfleet.redfish.tls import normalize_fingerprint

    return normalize_fingerprint(fp)


def _default_actor() -> str:
    env = os.environ.get("REDFLEET_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


def _jsonable(inventory: Any) -> dict[str, Any]:
    if hasattr(inventory, "model_dump"):
        data = inventory.model_dump(mode="json")
    else:
        data = json.loads(json.dumps(inventory, default=str))
    if not isinstance(data, dict):
        raise TypeError(f"an inventory is a JSON object, not {type(data).__name__}")
    return data


def _worst_health(values: Iterable[Any]) -> str | None:
    rank = {"OK": 0, "Warning": 1, "Critical": 2}
    seen = [v for v in values if isinstance(v, str) and v in rank]
    return max(seen, key=lambda v: rank[v]) if seen else None


def _column_limit(model: type, name: str) -> int | None:
    col = model.__table__.columns[name]  # type: ignore[attr-defined]
    return col.type.length if isinstance(col.type, String) else None


def _retryable(exc: BaseException, sqlite: bool) -> bool:
    if sqlite:
        return isinstance(exc, OperationalError) and any(
            s in str(exc.orig).lower() for s in ("locked", "busy")
        )
    if isinstance(exc, IntegrityError):  # two writers inserting the same new key: the loser retries and sees it
        return getattr(exc.orig, "sqlstate", None) == "23505"
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")
    return False


# ----------------------------------------------------------------------------------------------------- the store


class FleetStore:
    """The fleet database: nodes, BMC endpoints and pins, encrypted credentials, inventory history, events, audit.

    ``url``: a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://user@host/db``) or a SQLite file path;
    default ``$REDFLEET_DB`` or ``~/.local/share/redfleet/redfleet.db``. The schema is brought to the newest
    revision on open (``migrate=False`` to skip). ``keyring``: the credential key (default: ``$REDFLEET_KEY`` or the
    key file, loaded the first time a credential is written or read). ``actor``: who the audit log names
    (default ``$REDFLEET_ACTOR`` or the login name).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        keyring: KeyRing | None = None,
        actor: str | None = None,
        migrate: bool = True,
        max_retries: int = 8,
        engine: Engine | None = None,
    ) -> None:
        self.url = resolve_db_url(url) if url else default_db_url()
        self.engine = engine if engine is not None else create_store_engine(self.url)
        self.actor = actor or _default_actor()
        self.max_retries = max_retries
        self._keyring = keyring
        self._key_lock = threading.Lock()
        self._sqlite = is_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sm = sessionmaker(self.engine.execution_options(**WRITE), expire_on_commit=False)
        self._pins: StorePinStore | None = None
        if migrate:
            self.migrate()

    # -- lifecycle

    def __repr__(self) -> str:
        return f"FleetStore({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def migrate(self) -> str | None:
        """Create or upgrade the schema (never drops data). Returns the revision the database is at."""
        try:
            return upgrade(self.engine)
        except OperationalError as exc:
            raise StoreError(f"cannot open the fleet database {self.display_url}: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"migrating the fleet database {self.display_url} failed: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions

    def _reading(self, fn: Callable[[Session], T]) -> T:
        try:
            with self._read() as session, session.begin():
                return fn(session)
        except OperationalError as exc:
            raise StoreError(f"fleet database {self.display_url}: {exc.orig}") from exc

    def _writing(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one write transaction; retried on busy/serialization/duplicate-key races."""
        duplicates = 0
        for attempt in range(self.max_retries + 1):
            try:
                with self._write_sm() as session, session.begin():
                    return fn(session)
            except (OperationalError, IntegrityError, DBAPIError) as exc:
                if isinstance(exc, IntegrityError):
                    duplicates += 1  # a race on a new key resolves in one retry; more is a real conflict
                if attempt < self.max_retries and duplicates <= 2 and _retryable(exc, self._sqlite):
                    time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
                    continue
                if isinstance(exc, OperationalError):
                    raise StoreError(f"fleet database {self.display_url}: {exc.orig}") from exc
                raise
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A SQLAlchemy session in one transaction, committed on leaving the block (rolled back on error), for code
        with tables of its own on the shared Base (e.g. ``redfleet.store.ssd``). ``write=True`` takes SQLite's
        write lock up front (``BEGIN IMMEDIATE``), so a concurrent writer waits instead of failing halfway. For
        retries on busy/serialization errors use :meth:`transaction`."""
        factory = self._write_sm if write else self._read
        with factory() as session, session.begin():
            yield session

    def transaction(self, fn: Callable[[Session], T], *, write: bool = True) -> T:
        """Run ``fn(session)`` in one transaction and return its result; a write is retried (whole) when SQLite is
        busy or PostgreSQL reports a serialization failure or deadlock, so ``fn`` must be safe to run again."""
        return self._writing(fn) if write else self._reading(fn)

    def _audit(self, session: Session, action: str, target: str | None, *, reason: str | None = None,
               result: str = "ok", details: dict[str, Any] | None = None, actor: str | None = None) -> None:
        session.add(AuditEntry(actor=actor or self.actor, action=action, target=target, reason=reason,
                               result=result, details=details, at=utcnow()))

    def audit(self, action: str, target: str | None, *, reason: str | None = None, result: str = "ok",
              details: Mapping[str, Any] | None = None, actor: str | None = None) -> None:
        """Record a change made outside the store (a power action, a BMC reset, ...) in the audit log."""
        payload = _jsonable(dict(details)) if details is not None else None
        self._writing(lambda s: self._audit(s, action, target, reason=reason, result=result, details=payload,
                                            actor=actor))

    def _audit_failure(self, action: str, target: str | None, error: BaseException, *, reason: str | None,
                       actor: str | None, details: dict[str, Any] | None = None) -> None:
        """Record a failed change in its own transaction (the failed one was rolled back)."""
        try:
            self._writing(lambda s: self._audit(s, action, target, reason=reason, result="error", actor=actor,
                                                details={**(details or {}), "error": str(error)[:2000]}))
        except Exception as exc:  # the database itself is the problem: say so, keep the original error
            log.warning("could not write the audit row for failed %s: %s", action, exc)

    # -- keys and credentials

    @property
    def keyring(self) -> KeyRing:
        with self._key_lock:
            if self._keyring is None:
                self._keyring = KeyRing.load(create=True)
            return self._keyring

    def credentials_for(self, node: str) -> BmcCredentials | None:
        """The login for a node's BMC (None when it has none). Raises CredentialKeyError for a wrong key."""

        def run(session: Session) -> tuple[str, str, str, str] | None:
            row = self._node_row(session, node)
            cred = row.bmc.credential if row.bmc is not None else None
            if cred is None:
                return None
            return cred.name, cred.username, cred.secret, cred.key_id

        found = self._reading(run)
        if found is None:
            return None
        name, username, token, kid = found
        password = self.keyring.decrypt(token, what=f"credential {name!r}", stored_key_id=kid)
        return BmcCredentials(name=name, username=username, password=password)

    def credential(self, name: str) -> BmcCredentials:
        """A credential by its name in the fleet file."""

        def run(session: Session) -> tuple[str, str, str]:
            cred = session.scalar(select(Credential).where(Credential.name == name))
            if cred is None:
                raise NotFoundError(f"no credential named {name!r} in the fleet store")
            return cred.username, cred.secret, cred.key_id

        username, token, kid = self._reading(run)
        return BmcCredentials(name=name, username=username,
                              password=self.keyring.decrypt(token, what=f"credential {name!r}", stored_key_id=kid))

    # -- fleet file import

    def import_fleet(self, fleet: FleetFile | str | Path, *, reason: str | None = None,
                     actor: str | None = None) -> ImportResult:
        """Import a fleet file (or a parsed :class:`FleetFile`) idempotently, all or nothing.

        Nodes are added or updated to match the file (rack, position, tags, flavor, BMC URL, credential, host
        address; a ``tls_fingerprint`` given in the file becomes the pin); nodes not in the file are kept.
        Passwords are resolved (inline, env, file) and encrypted. A bad file raises :class:`FleetFileError` naming
        the row, before anything is written; a failure while writing rolls everything back.
        """
        source = str(fleet) if isinstance(fleet, str | Path) else "<fleet>"
        try:
            parsed = load_fleet_file(fleet) if isinstance(fleet, str | Path) else fleet
            passwords = self._resolve_passwords(parsed, source)
            self._check_file(parsed, source)
        except FleetFileError as exc:
            self._audit_failure("fleet.import", source, exc, reason=reason, actor=actor)
            raise
        # Credentials are checked against the key before any write, so a wrong key fails cleanly.
        keyring = self.keyring if parsed.credentials else None
        try:
            return self._writing(lambda s: self._import(s, parsed, passwords, keyring, source, reason, actor))
        except (StoreError, SQLAlchemyError) as exc:
            self._audit_failure("fleet.import", source, exc, reason=reason, actor=actor)
            if isinstance(exc, SQLAlchemyError):
                raise StoreError(f"importing {source} failed, nothing was changed: {exc}") from exc
            raise

    @staticmethod
    def _resolve_passwords(fleet: FleetFile, source: str) -> dict[str, Secret]:
        out: dict[str, Secret] = {}
        for name, cred in fleet.credentials.items():
            try:
                out[name] = Secret(cred.resolve_password())
            except FleetFileError as exc:
                raise FleetFileError(f"{source}: credential {name!r}: {exc}") from None
        return out

    @staticmethod
    def _check_file(fleet: FleetFile, source: str) -> None:
        """What the database would refuse, said in terms of the file's rows."""
        limits = {
            "name": _column_limit(Node, "name"), "rack": _column_limit(Node, "rack"),
            "flavor": _column_limit(Node, "flavor"), "host_address": _column_limit(Node, "host_address"),
            "bmc_url": _column_limit(BmcEndpoint, "url"),
        }
        by_origin: dict[str, tuple[int, FleetNode]] = {}
        for idx, node in enumerate(fleet.nodes, start=1):
            where = f"{source}: node #{idx} ({node.name})"
            for attr, limit in limits.items():
                value = getattr(node, attr)
                if limit and isinstance(value, str) and len(value) > limit:
                    raise FleetFileError(f"{where}.{attr}: longer than {limit} characters")
            if any(len(t) > 100 for t in node.tags):
                raise FleetFileError(f"{where}.tags: a tag is longer than 100 characters")
            if node.position is not None and not (-(2**31) <= node.position < 2**31):
                raise FleetFileError(f"{where}.position: out of range")
            try:
                origin = endpoint_origin(node.bmc_url)
                if node.tls_fingerprint is not None:
                    _normalize_fp(node.tls_fingerprint)
            except ValueError as exc:
                raise FleetFileError(f"{where}: {exc}") from None
            if not urlsplit(node.bmc_url).hostname:
                raise FleetFileError(f"{where}.bmc_url: {node.bmc_url!r} has no host")
            prev = by_origin.get(origin)
            if prev is not None:
                pidx, pnode = prev
                for attr in ("credential", "tls_fingerprint"):
                    if getattr(pnode, attr) != getattr(node, attr):
                        raise FleetFileError(
                            f"{where}: shares BMC {origin} with node #{pidx} ({pnode.name}) but gives another {attr}"
                        )
            else:
                by_origin[origin] = (idx, node)
        for name, cred in fleet.credentials.items():
            if len(name) > (_column_limit(Credential, "name") or 200):
                raise FleetFileError(f"{source}: credential {name[:40]!r}...: name too long")
            if len(cred.username) > (_column_limit(Credential, "username") or 200):
                raise FleetFileError(f"{source}: credential {name!r}.username: too long")

    def _import(self, session: Session, fleet: FleetFile, passwords: dict[str, Secret], keyring: KeyRing | None,
                source: str, reason: str | None, actor: str | None) -> ImportResult:
        result = ImportResult()
        now = utcnow()

        creds: dict[str, Credential] = {}
        for name, cred in fleet.credentials.items():
            password = passwords[name]
            origin = ("env:" + cred.password_env if cred.password_env else
                      "file:" + cred.password_file if cred.password_file else "inline")
            row = session.scalar(select(Credential).where(Credential.name == name))
            assert keyring is not None
            if row is None:
                row = Credential(name=name, username=cred.username, secret=keyring.encrypt(password.reveal()),
                                 key_id=keyring.primary_id, source=origin, created_at=now, updated_at=now)
                session.add(row)
                result.credentials_added.append(name)
                self._audit(session, "credential.add", name, reason=reason, actor=actor,
                            details={"username": cred.username, "source": origin})
            else:
                old = keyring.decrypt(row.secret, what=f"stored credential {name!r}", stored_key_id=row.key_id)
                what = [f for f, same in (("username", row.username == cred.username), ("password", old == password),
                                          ("source", row.source == origin)) if not same]
                if what:
                    row.username = cred.username
                    if "password" in what or row.key_id != keyring.primary_id:
                        row.secret = keyring.encrypt(password.reveal())
                        row.key_id = keyring.primary_id
                    row.source = origin
                    result.credentials_updated.append(name)
                    self._audit(session, "credential.update", name, reason=reason, actor=actor,
                                details={"fields": what, "username": cred.username, "source": origin})
            creds[name] = row
        session.flush()

        # One query per table, one flush at the end: a 10,000-node file is a few batched INSERTs, not 10,000 trips.
        endpoints = {e.origin: e for e in session.scalars(select(BmcEndpoint)).unique()}
        existing_nodes = {n.name: n for n in session.scalars(select(Node)).unique()}
        # What each node looked like before this import (endpoints are shared, and are changed in the loop).
        before = {
            n.name: (n.bmc, n.bmc.url if n.bmc else None,
                     n.bmc.credential.name if n.bmc and n.bmc.credential else None,
                     n.bmc.tls_fingerprint if n.bmc else None)
            for n in existing_nodes.values()
        }
        for spec in fleet.nodes:
            origin = endpoint_origin(spec.bmc_url)
            ep = endpoints.get(origin)
            if ep is None:
                ep = endpoints[origin] = BmcEndpoint(origin=origin, url=spec.bmc_url, created_at=now, updated_at=now)
                session.add(ep)
            node = existing_nodes.get(spec.name)
            fields: list[str] = []

            cred_row = creds.get(spec.credential) if spec.credential else None
            if spec.credential and cred_row is None:  # the file validator guarantees this; keep the DB honest
                raise FleetFileError(f"{source}: node {spec.name!r} references unknown credential {spec.credential!r}")
            old_ep, old_url, old_cred, old_fp = before.get(spec.name, (None, None, None, None))
            if ep.url != spec.bmc_url:
                ep.url = spec.bmc_url
            if ep.credential is not cred_row:
                ep.credential = cred_row
            if spec.tls_fingerprint is not None:
                fp = _normalize_fp(spec.tls_fingerprint)
                if ep.tls_fingerprint != fp:
                    ep.tls_fingerprint = fp
                    ep.tls_pinned_at = now
                    ep.tls_pinned_by = f"fleet file {source}"
                    if ep.tls_pending_fingerprint == fp:
                        ep.tls_pending_fingerprint = None
                        ep.tls_pending_since = None
                    self._audit(session, "tls.pin", origin, reason=reason, actor=actor,
                                details={"fingerprint": fp, "previous": old_fp, "from": "fleet file"})

            wanted = {
                "rack": spec.rack, "position": spec.position, "tags": list(spec.tags), "flavor": spec.flavor,
                "host_address": spec.host_address,
            }
            if node is None:
                node = Node(name=spec.name, bmc=ep, state="active", created_at=now, updated_at=now, **wanted)
                session.add(node)
                result.added.append(spec.name)
                self._audit(session, "node.add", spec.name, reason=reason, actor=actor,
                            details={"bmc_url": spec.bmc_url, "credential": spec.credential, **wanted})
                continue
            for attr, value in wanted.items():
                if getattr(node, attr) != value:
                    fields.append(attr)
                    setattr(node, attr, value)
            if old_ep is not ep or old_url != spec.bmc_url:
                fields.append("bmc_url")
                node.bmc = ep
            if old_cred != spec.credential:
                fields.append("credential")
            if spec.tls_fingerprint is not None and old_fp != ep.tls_fingerprint:
                fields.append("tls_fingerprint")
            if fields:
                node.updated_at = now
                result.updated.append(spec.name)
                result.changes[spec.name] = fields
                self._audit(session, "node.update", spec.name, reason=reason, actor=actor,
                            details={"fields": fields, "bmc_url": spec.bmc_url, "credential": spec.credential,
                                     **{k: v for k, v in wanted.items() if k in fields}})
            else:
                result.unchanged.append(spec.name)
        in_file = {n.name for n in fleet.nodes}
        result.absent = sorted(n for n in existing_nodes if n not in in_file)
        self._audit(session, "fleet.import", source, reason=reason, actor=actor, details={
            "added": len(result.added), "updated": len(result.updated), "unchanged": len(result.unchanged),
            "absent": len(result.absent), "credentials_added": len(result.credentials_added),
            "credentials_updated": len(result.credentials_updated),
        })
        return result

    # -- nodes

    @staticmethod
    def _node_row(session: Session, name: str, *, lock: bool = False) -> Node:
        query = select(Node).where(Node.name == name)
        if lock:
            query = query.with_for_update(of=Node)
        row = session.scalar(query)
        if row is None:
            raise NotFoundError(f"no node named {name!r} in the fleet store")
        return row

    @staticmethod
    def _record(node: Node) -> NodeRecord:
        ep = node.bmc
        return NodeRecord(
            name=node.name, bmc_url=ep.url if ep else None,
            credential=ep.credential.name if ep is not None and ep.credential is not None else None,
            rack=node.rack, position=node.position, tags=tuple(node.tags or ()), flavor=node.flavor,
            vendor=node.vendor, model=node.model, serial=node.serial, host_address=node.host_address,
            state=node.state, state_reason=node.state_reason, health=node.health,
            tls_fingerprint=ep.tls_fingerprint if ep else None,
            tls_pending_fingerprint=ep.tls_pending_fingerprint if ep else None,
            last_inventory_at=node.last_inventory_at, created_at=node.created_at, updated_at=node.updated_at,
        )

    def nodes(self, *, rack: str | None = None, tag: str | None = None, state: str | None = None) -> list[NodeRecord]:
        """Every node (optionally one rack, one tag, one state), by rack, position and name."""

        def run(session: Session) -> list[NodeRecord]:
            # Plain columns over two outer joins: fast for a fleet of tens of thousands (no ORM objects).
            query = (
                select(Node.name, BmcEndpoint.url, Credential.name, Node.rack, Node.position, Node.tags, Node.flavor,
                       Node.vendor, Node.model, Node.serial, Node.host_address, Node.state, Node.state_reason,
                       Node.health, BmcEndpoint.tls_fingerprint, BmcEndpoint.tls_pending_fingerprint,
                       Node.last_inventory_at, Node.created_at, Node.updated_at)
                .outerjoin(BmcEndpoint, BmcEndpoint.id == Node.bmc_id)
                .outerjoin(Credential, Credential.id == BmcEndpoint.credential_id)
            )
            if rack is not None:
                query = query.where(Node.rack == rack)
            if state is not None:
                query = query.where(Node.state == state)
            rows = session.execute(query.order_by(Node.rack, Node.position, Node.name)).all()
            names = [f.name for f in dataclass_fields(NodeRecord)]
            records = [NodeRecord(**{**dict(zip(names, r, strict=True)), "tags": tuple(r[5] or ())}) for r in rows]
            return [r for r in records if tag is None or tag in r.tags]

        return self._reading(run)

    def node(self, name: str) -> NodeRecord:
        return self._reading(lambda s: self._record(self._node_row(s, name)))

    def set_node_state(self, name: str, state: str, *, reason: str | None = None,
                       actor: str | None = None) -> NodeRecord:
        """Set a node's lifecycle state (active, maintenance, drained, retired, ...); audited."""

        def run(session: Session) -> NodeRecord:
            node = self._node_row(session, name, lock=True)
            old = node.state
            if old != state:
                node.state = state
                node.state_reason = reason
                node.state_changed_at = utcnow()
            self._audit(session, "node.state", name, reason=reason, actor=actor, details={"from": old, "to": state})
            return self._record(node)

        return self._writing(run)

    # -- inventory history

    def record_inventory(self, node: str, inventory: Any, *, at: datetime | None = None,
                         actor: str | None = None, reason: str | None = None) -> list[Change]:
        """Store a collected inventory (the normalized model, or its JSON dict) and return what changed since the
        previous one. The first inventory of a node is the baseline (no changes). Same hardware as last time: the
        latest snapshot is refreshed (``last_seen_at``, volatile readings), no new row."""
        data = _jsonable(inventory)
        when = at or utcnow()
        fingerprint = digest(data)

        def run(session: Session) -> list[Change]:
            row = self._node_row(session, node, lock=True)
            self._apply_facts(row, data, when)
            # Only the id and digest of the latest snapshot: its (large) data is read only when something changed.
            latest = session.execute(
                select(InventorySnapshot.id, InventorySnapshot.digest).where(InventorySnapshot.node_id == row.id)
                .order_by(InventorySnapshot.collected_at.desc(), InventorySnapshot.id.desc()).limit(1)
            ).first()
            if latest is not None and latest.digest == fingerprint:
                session.execute(update(InventorySnapshot).where(InventorySnapshot.id == latest.id)
                                .values(data=data, last_seen_at=when))
                return []
            snap = InventorySnapshot(node_id=row.id, collected_at=when, last_seen_at=when, digest=fingerprint,
                                     data=data)
            session.add(snap)
            session.flush()
            if latest is None:
                self._audit(session, "inventory.baseline", node, reason=reason, actor=actor,
                            details={"snapshot": snap.id})
                return []
            previous = session.scalar(select(InventorySnapshot.data).where(InventorySnapshot.id == latest.id))
            diffs = diff_inventories(previous or {}, data)
            out: list[Change] = []
            for d in diffs:
                session.add(InventoryChange(
                    node_id=row.id, snapshot_id=snap.id, previous_snapshot_id=latest.id, detected_at=when,
                    category=d.category, component=d.component[:300], kind=d.kind, field=d.field and d.field[:100],
                    old_value=d.old, new_value=d.new, summary=d.summary,
                ))
                out.append(Change(node=node, at=when, category=d.category, component=d.component, kind=d.kind,
                                  summary=d.summary, field=d.field, old=d.old, new=d.new, snapshot_id=snap.id))
            self._audit(session, "inventory.record", node, reason=reason, actor=actor, details={
                "snapshot": snap.id, "previous": latest.id, "changes": len(out),
                "summary": [c.summary for c in out[:20]],
            })
            return out

        return self._writing(run)

    @staticmethod
    def _apply_facts(node: Node, data: Mapping[str, Any], when: datetime) -> None:
        node.last_inventory_at = when
        systems = [s for s in data.get("systems") or [] if isinstance(s, Mapping)]
        if systems:
            first = systems[0]
            for attr, key in (("vendor", "manufacturer"), ("model", "model"), ("serial", "serial")):
                value = first.get(key)
                if isinstance(value, str) and value and getattr(node, attr) != value[:200]:
                    setattr(node, attr, value[:200])
            health = _worst_health(s.get("health") for s in systems)
            if health is not None:
                node.health = health
        bmc = data.get("bmc")
        ep = node.bmc
        if isinstance(bmc, Mapping) and ep is not None:
            for attr, keys in (("vendor", ("vendor", "manufacturer")), ("model", ("model",)),
                               ("firmware_version", ("firmware_version", "firmware")),
                               ("redfish_version", ("redfish_version",))):
                value = next((bmc[k] for k in keys if isinstance(bmc.get(k), str) and bmc.get(k)), None)
                if value is not None and getattr(ep, attr) != value:
                    setattr(ep, attr, value[:200])
            caps = bmc.get("capabilities")
            if isinstance(caps, Mapping) and ep.capabilities != caps:
                ep.capabilities = dict(caps)
            ep.last_contact_at = when
            ep.last_error = None

    def latest_inventory(self, node: str) -> dict[str, Any] | None:
        def run(session: Session) -> dict[str, Any] | None:
            row = self._node_row(session, node)
            return session.scalar(
                select(InventorySnapshot.data).where(InventorySnapshot.node_id == row.id)
                .order_by(InventorySnapshot.collected_at.desc(), InventorySnapshot.id.desc()).limit(1)
            )

        return self._reading(run)

    def snapshots(self, node: str) -> list[SnapshotInfo]:
        """A node's distinct inventories, oldest first."""

        def run(session: Session) -> list[SnapshotInfo]:
            row = self._node_row(session, node)
            rows = session.execute(
                select(InventorySnapshot.id, InventorySnapshot.collected_at, InventorySnapshot.last_seen_at,
                       InventorySnapshot.digest)
                .where(InventorySnapshot.node_id == row.id)
                .order_by(InventorySnapshot.collected_at, InventorySnapshot.id)
            ).all()
            return [SnapshotInfo(id=r[0], node=node, collected_at=r[1], last_seen_at=r[2], digest=r[3]) for r in rows]

        return self._reading(run)

    def snapshot(self, snapshot_id: int) -> dict[str, Any]:
        def run(session: Session) -> dict[str, Any]:
            snap = session.get(InventorySnapshot, snapshot_id)
            if snap is None:
                raise NotFoundError(f"no inventory snapshot {snapshot_id}")
            return snap.data

        return self._reading(run)

    def history(self, node: str | None = None, *, since: datetime | None = None,
                limit: int | None = None) -> list[Change]:
        """What changed in a node's inventory (or the fleet's, with ``node=None``), newest first."""

        def run(session: Session) -> list[Change]:
            query = select(InventoryChange, Node.name).join(Node, Node.id == InventoryChange.node_id)
            if node is not None:
                query = query.where(InventoryChange.node_id == self._node_row(session, node).id)
            if since is not None:
                query = query.where(InventoryChange.detected_at >= since)
            # Newest first; the changes found in one collection stay in the order they were found.
            query = query.order_by(InventoryChange.detected_at.desc(), InventoryChange.snapshot_id.desc(),
                                   InventoryChange.id)
            if limit is not None:
                query = query.limit(limit)
            return [
                Change(node=name, at=c.detected_at, category=c.category, component=c.component, kind=c.kind,
                       summary=c.summary, field=c.field, old=c.old_value, new=c.new_value, snapshot_id=c.snapshot_id)
                for c, name in session.execute(query).all()
            ]

        return self._reading(run)

    def record_bmc_error(self, node: str, error: str) -> None:
        """Note that the last attempt to reach a node's BMC failed (shown by ``fleet list``; not audited)."""

        def run(session: Session) -> None:
            row = self._node_row(session, node)
            if row.bmc is not None:
                row.bmc.last_error = error[:2000]

        self._writing(run)

    # -- events

    def add_event(self, node: str | None, message: str, *, severity: str = "OK", source: str = "redfleet",
                  message_id: str | None = None, payload: Mapping[str, Any] | None = None,
                  at: datetime | None = None) -> int:
        """Append an event (``node=None`` for fleet-wide ones). Returns its id."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")

        def run(session: Session) -> int:
            node_id = self._node_row(session, node).id if node is not None else None
            ev = Event(node_id=node_id, at=at or utcnow(), source=source, severity=severity, message_id=message_id,
                       message=message, payload=_jsonable(dict(payload)) if payload is not None else None)
            session.add(ev)
            session.flush()
            return ev.id

        return self._writing(run)

    def events(self, node: str | None = None, *, since: datetime | None = None, severity: str | None = None,
               limit: int = 100) -> list[EventRecord]:
        """Events, newest first."""

        def run(session: Session) -> list[EventRecord]:
            query = select(Event, Node.name).outerjoin(Node, Node.id == Event.node_id)
            if node is not None:
                query = query.where(Event.node_id == self._node_row(session, node).id)
            if since is not None:
                query = query.where(Event.at >= since)
            if severity is not None:
                query = query.where(Event.severity == severity)
            query = query.order_by(Event.at.desc(), Event.id.desc()).limit(limit)
            return [EventRecord(id=e.id, node=name, at=e.at, source=e.source, severity=e.severity,
                                message_id=e.message_id, message=e.message, payload=e.payload)
                    for e, name in session.execute(query).all()]

        return self._reading(run)

    # -- audit

    def audit_log(self, *, target: str | None = None, action: str | None = None,
                  limit: int = 100) -> list[AuditRecord]:
        """Audit rows, newest first."""

        def run(session: Session) -> list[AuditRecord]:
            query = select(AuditEntry)
            if target is not None:
                query = query.where(AuditEntry.target == target)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            rows = session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)).all()
            return [AuditRecord(id=r.id, at=r.at, actor=r.actor, action=r.action, target=r.target, reason=r.reason,
                                result=r.result, details=r.details) for r in rows]

        return self._reading(run)

    def counts(self) -> dict[str, int]:
        """Rows per table (for status pages and tests)."""

        def run(session: Session) -> dict[str, int]:
            out = {}
            for model in (Node, BmcEndpoint, Credential, InventorySnapshot, InventoryChange, Event, AuditEntry):
                out[model.__tablename__] = session.scalar(select(func.count()).select_from(model)) or 0
            return out

        return self._reading(run)

    # -- TLS pins

    def pin_store(self) -> StorePinStore:
        """The client's :class:`~redfleet.redfish.tls.PinStore`, kept in this database (one per store)."""
        if self._pins is None:
            self._pins = StorePinStore(self)
        return self._pins

    def _endpoint_for(self, session: Session, target: str) -> BmcEndpoint:
        """An endpoint by node name or by BMC URL/origin."""
        node = session.scalar(select(Node).where(Node.name == target))
        if node is not None:
            if node.bmc is None:
                raise NotFoundError(f"node {target!r} has no BMC endpoint")
            return node.bmc
        try:
            origin = endpoint_origin(target)
        except ValueError:
            origin = target
        ep = session.scalar(select(BmcEndpoint).where(BmcEndpoint.origin == origin))
        if ep is None:
            raise NotFoundError(f"no node or BMC {target!r} in the fleet store")
        return ep

    def _delete_everything(self) -> None:  # tests only
        def run(session: Session) -> None:
            for model in (InventoryChange, InventorySnapshot, Event, Node, BmcEndpoint, Credential, AuditEntry):
                session.execute(delete(model))

        self._writing(run)


class StorePinStore:
    """TLS pins in the fleet database, with the operator-acceptance flow.

    Implements the client's ``PinStore`` protocol (``get``/``put``, keys as ``redfleet.redfish.tls.bmc_key``).
    ``get`` is answered from memory (the client calls it on the event loop); writes go straight to the database.

    - ``put(bmc, fp)``: trust on first use, or re-pin after an operator accepted (audited);
    - ``record_pending(bmc, presented)``: the client saw a certificate other than the pin and refused it; the new
      fingerprint waits here for an operator (``redfleet fleet accept-cert NODE``);
    - ``accept(target, fingerprint=None)``: the operator accepts what is pending (optionally naming the exact
      fingerprint they checked out of band); it becomes the pin.
    """

    def __init__(self, store: FleetStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        rows = self._store._reading(lambda s: s.execute(
            select(BmcEndpoint.origin, BmcEndpoint.tls_fingerprint).where(BmcEndpoint.tls_fingerprint.is_not(None))
        ).all())
        with self._lock:
            self._cache = {origin: fp for origin, fp in rows if fp}

    def items(self) -> dict[str, str]:
        """The pins in memory (as of the last :meth:`refresh` and this process's own writes), by origin."""
        with self._lock:
            return dict(self._cache)

    def get(self, bmc: str) -> str | None:
        key = endpoint_origin(bmc)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        fp = self._store._reading(lambda s: s.scalar(
            select(BmcEndpoint.tls_fingerprint).where(BmcEndpoint.origin == key)))
        if fp is not None:
            with self._lock:
                self._cache[key] = fp
        return fp

    def put(self, bmc: str, fingerprint: str, *, actor: str | None = None, reason: str | None = None) -> None:
        key = endpoint_origin(bmc)
        fp = _normalize_fp(fingerprint)
        store = self._store

        def run(session: Session) -> None:
            ep = session.scalar(select(BmcEndpoint).where(BmcEndpoint.origin == key))
            now = utcnow()
            if ep is None:
                ep = BmcEndpoint(origin=key, url=bmc.rstrip("/"), created_at=now, updated_at=now)
                session.add(ep)
            previous = ep.tls_fingerprint
            if ep.tls_pending_fingerprint == fp:
                ep.tls_pending_fingerprint = None
                ep.tls_pending_since = None
            if previous == fp:
                return
            ep.tls_fingerprint = fp
            ep.tls_pinned_at = now
            ep.tls_pinned_by = actor or store.actor
            store._audit(session, "tls.pin" if previous is None else "tls.repin", key, reason=reason, actor=actor,
                         details={"fingerprint": fp, "previous": previous})

        store._writing(run)
        with self._lock:
            self._cache[key] = fp

    def record_pending(self, bmc: str, presented: str, *, actor: str | None = None) -> bool:
        """Note a refused certificate. Returns True when it is new (not already pending, not the pin)."""
        key = endpoint_origin(bmc)
        fp = _normalize_fp(presented)
        store = self._store

        def run(session: Session) -> bool:
            ep = session.scalar(select(BmcEndpoint).where(BmcEndpoint.origin == key))
            if ep is None or ep.tls_fingerprint == fp or ep.tls_pending_fingerprint == fp:
                return False
            ep.tls_pending_fingerprint = fp
            ep.tls_pending_since = utcnow()
            store._audit(session, "tls.pending", key, actor=actor, result="ok",
                         details={"pinned": ep.tls_fingerprint, "presented": fp})
            return True

        return store._writing(run)

    def pending(self) -> list[PendingPin]:
        """Every BMC with a certificate awaiting acceptance."""

        def run(session: Session) -> list[PendingPin]:
            eps = session.scalars(select(BmcEndpoint).where(BmcEndpoint.tls_pending_fingerprint.is_not(None))
                                  .order_by(BmcEndpoint.origin)).unique().all()
            out = []
            for ep in eps:
                names = tuple(sorted(session.scalars(select(Node.name).where(Node.bmc_id == ep.id)).all()))
                assert ep.tls_pending_fingerprint is not None
                out.append(PendingPin(origin=ep.origin, nodes=names, pinned=ep.tls_fingerprint,
                                      pending=ep.tls_pending_fingerprint, since=ep.tls_pending_since))
            return out

        return self._store._reading(run)

    def accept(self, target: str, fingerprint: str | None = None, *, actor: str | None = None,
               reason: str | None = None) -> str:
        """Accept the certificate pending for a node or BMC (``target``: node name or BMC URL); returns the new pin.

        With ``fingerprint``, it must equal the pending one (what the operator verified out of band); with no
        pending certificate, ``fingerprint`` is pinned directly (the operator knows the new certificate)."""
        store = self._store
        wanted = _normalize_fp(fingerprint) if fingerprint is not None else None

        def run(session: Session) -> tuple[str, str]:
            ep = store._endpoint_for(session, target)
            pending = ep.tls_pending_fingerprint
            if pending is None and wanted is None:
                raise NotFoundError(f"{target}: no new certificate is awaiting acceptance (pinned: "
                                    f"{ep.tls_fingerprint or 'nothing'})")
            if pending is not None and wanted is not None and wanted != pending:
                raise PinMismatchError(f"{target}: the certificate awaiting acceptance is {pending}, not {wanted}; "
                                       "nothing was changed")
            new = wanted or pending
            assert new is not None
            previous = ep.tls_fingerprint
            ep.tls_fingerprint = new
            ep.tls_pinned_at = utcnow()
            ep.tls_pinned_by = actor or store.actor
            ep.tls_pending_fingerprint = None
            ep.tls_pending_since = None
            store._audit(session, "tls.accept", ep.origin, reason=reason, actor=actor,
                         details={"fingerprint": new, "previous": previous, "target": target})
            return ep.origin, new

        try:
            origin, new = store._writing(run)
        except (NotFoundError, PinMismatchError) as exc:
            store._audit_failure("tls.accept", target, exc, reason=reason, actor=actor)
            raise
        with self._lock:
            self._cache[origin] = new
        return new


__all__ = [
    "AuditRecord",
    "BmcCredentials",
    "Change",
    "CredentialKeyError",
    "EventRecord",
    "FleetStore",
    "ImportResult",
    "NodeRecord",
    "PendingPin",
    "SnapshotInfo",
    "StorePinStore",
    "endpoint_origin",
]
