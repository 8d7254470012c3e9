"""TLS policy for talking to BMCs: verify against a CA bundle, pin per BMC (trust on first use), or insecure.

A *pin* is the SHA-256 fingerprint of the BMC's leaf certificate (DER), written ``sha256:<64 hex>``. With
pinning, the first connection to a BMC stores the fingerprint it presents (TOFU); every later connection must
present the same certificate or the client raises :class:`~redfleet.redfish.errors.CertificateChanged` and
sends nothing (no credentials leave the machine). An operator accepts a new certificate with
``PinStore.put(bmc, new_fingerprint)`` (CLI: ``--accept-new-cert``).

Pins are kept by a :class:`PinStore`: in memory, in a JSON file, or in the fleet database (the store's
implementation). The key is the BMC's normalized base URL (``https://host:port``).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit


@runtime_checkable
class PinStore(Protocol):
    """Where pinned certificate fingerprints live. Implementations must be safe to call from one event loop
    (they are called synchronously, once per BMC connection setup, so keep them fast)."""

    def get(self, bmc: str) -> str | None:
        """The pinned ``sha256:<hex>`` fingerprint for this BMC key, or None if never seen."""
        ...

    def put(self, bmc: str, fingerprint: str) -> None:
        """Pin (or re-pin, after an operator accepted a change) this BMC's fingerprint."""
        ...


class MemoryPinStore:
    """Pins kept in a dict (tests, one-off runs)."""

    def __init__(self, pins: dict[str, str] | None = None) -> None:
        self._pins: dict[str, str] = {bmc_key(k): normalize_fingerprint(v) for k, v in (pins or {}).items()}

    def get(self, bmc: str) -> str | None:
        return self._pins.get(bmc_key(bmc))

    def put(self, bmc: str, fingerprint: str) -> None:
        self._pins[bmc_key(bmc)] = normalize_fingerprint(fingerprint)

    def items(self) -> dict[str, str]:
        return dict(self._pins)


class JsonFilePinStore:
    """Pins kept in a JSON file ``{"https://host:443": "sha256:..."}``, written atomically on each change.

    Default location: ``$REDFLEET_PINS`` or ``~/.config/redfleet/pins.json``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_pin_file()
        self._lock = threading.Lock()
        self._pins: dict[str, str] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError) as exc:
                raise ValueError(f"pin file {self.path} is not readable JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ValueError(f"pin file {self.path} must hold a JSON object")
            self._pins = {bmc_key(k): normalize_fingerprint(str(v)) for k, v in data.items()}

    def __getstate__(self) -> dict[str, object]:  # picklable for worker processes (the lock is per process)
        return {"path": self.path, "pins": self._pins}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.path = state["path"]  # type: ignore[assignment]
        self._pins = state["pins"]  # type: ignore[assignment]
        self._lock = threading.Lock()

    def get(self, bmc: str) -> str | None:
        return self._pins.get(bmc_key(bmc))

    def put(self, bmc: str, fingerprint: str) -> None:
        with self._lock:
            self._pins[bmc_key(bmc)] = normalize_fingerprint(fingerprint)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pins-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(self._pins, fh, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def default_pin_file() -> Path:
    env = os.environ.get("REDFLEET_PINS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "redfleet" / "pins.json"


def bmc_key(url: str) -> str:
    """``https://Host:443/redfish/v1`` -> ``https://host:443``: the key pins are stored under."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    scheme = (parts.scheme or "https").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def fingerprint_der(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalize_fingerprint(fp: str) -> str:
    """Accept ``sha256:ab12...``, ``AB:12:...`` (openssl style) or bare hex; return ``sha256:<lower hex>``."""
    value = fp.strip()
    if value.lower().startswith("sha256:"):
        value = value[7:]
    value = value.replace(":", "").replace(" ", "").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a SHA-256 fingerprint: {fp!r}")
    return "sha256:" + value


TLSMode = Literal["verify", "pin", "insecure"]


@dataclass(frozen=True)
class TLSPolicy:
    """How to trust a BMC's certificate.

    - ``verify``: the system trust store, or ``ca_bundle`` (a PEM file or directory), hostname checked;
    - ``pin``: accept whatever certificate the BMC shows the first time (or ``fingerprint`` when given, e.g. from
      the fleet file), store it in ``pin_store`` and refuse any other later;
    - ``insecure``: no verification at all (labs; logged as a warning by the CLI).
    """

    mode: TLSMode = "verify"
    ca_bundle: str | None = None
    pin_store: PinStore | None = None
    fingerprint: str | None = None  # expected pin known in advance (fleet file tls_fingerprint)
    check_hostname: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        if self.mode == "verify":
            if self.ca_bundle and Path(self.ca_bundle).is_dir():
                ctx = ssl.create_default_context(capath=self.ca_bundle)
            else:
                ctx = ssl.create_default_context(cafile=self.ca_bundle)
            ctx.check_hostname = self.check_hostname
            return ctx
        # pin / insecure: no chain verification; pin mode checks the fingerprint itself after the handshake.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


_CTX_CACHE: dict[tuple[str, str | None, bool], ssl.SSLContext] = {}


def cached_ssl_context(policy: TLSPolicy) -> ssl.SSLContext:
    """SSL contexts are expensive to build (the CA store is parsed each time): share one per policy shape."""
    key = (policy.mode if policy.mode == "verify" else "noverify", policy.ca_bundle, policy.check_hostname)
    ctx = _CTX_CACHE.get(key)
    if ctx is None:
        ctx = _CTX_CACHE[key] = policy.ssl_context()
    return ctx
