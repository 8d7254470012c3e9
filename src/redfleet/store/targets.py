"""BMC targets (URL, credentials, pinned fingerprint) for the store's nodes: what the collector, remediation's
executor and the RMA evidence reader connect with."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redfleet.redfish.fleet import NodeTarget
from redfleet.store.repository import FleetStore

log = logging.getLogger(__name__)


def targets_from_store(store: FleetStore, names: Sequence[str] | None = None) -> list[NodeTarget]:
    """Targets for every node of the store that has a BMC, or for ``names`` only (passwords decrypted once per
    credential; an unusable credential is logged and the node kept without one)."""
    creds: dict[str, tuple[str, str] | None] = {}
    out = []
    for rec in store.nodes() if names is None else [store.node(n) for n in names]:
        if not rec.bmc_url:
            continue
        user = password = None
        if rec.credential:
            if rec.credential not in creds:
                try:
                    c = store.credential(rec.credential)
                    creds[rec.credential] = (c.username, c.password.reveal())
                except Exception as exc:
                    log.warning("credential %s unusable: %s", rec.credential, exc)
                    creds[rec.credential] = None
            found = creds[rec.credential]
            if found:
                user, password = found
        out.append(NodeTarget(rec.name, rec.bmc_url, user, password, fingerprint=rec.tls_fingerprint,
                              tags=list(rec.tags)))
    return out
