"""One self-signed certificate per simulated BMC, EC P-256, deterministic from (seed, node index, generation).

Keys are derived from a hash of the seed and index and signed with deterministic ECDSA, so the same seed gives the
same certificates (and fingerprints) on every run and machine. Generated PEM files are cached on disk
(``<cache>/seed-<seed>/<address>-<generation>.pem``, plus ``fingerprints.json``) because Python's ``ssl`` loads
certificates only from files; an ``ssl.SSLContext`` for a BMC is built lazily on its first TLS connection.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2049, 12, 31, tzinfo=datetime.UTC)


def default_cache_dir() -> Path:
    env = os.environ.get("REDFLEET_SIM_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "redfleet" / "sim-certs"


def make_certificate(seed: int, index: int, name: str, address: str, generation: int = 0) -> tuple[bytes, str]:
    """PEM (key + certificate) and "sha256:<hex>" fingerprint for one BMC."""
    digest = hashlib.sha256(f"redfleet-sim:{seed}:{index}:{generation}".encode()).digest()
    secret = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(secret, ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "redfleet simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-bmc"),
        ]
    )
    import ipaddress

    serial = int.from_bytes(digest[:16], "big") >> 1 or 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(f"{name}-bmc"), x509.IPAddress(ipaddress.ip_address(address))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return pem, "sha256:" + hashlib.sha256(der).hexdigest()


class CertStore:
    """The certificate files of one fleet (one seed)."""

    def __init__(self, cache_dir: Path | str | None, seed: int) -> None:
        self.dir = Path(cache_dir or default_cache_dir()) / f"seed-{seed}"
        self.seed = seed
        self._index_file = self.dir / "fingerprints.json"
        self._fingerprints: dict[str, str] = {}
        self._dirty = False
        self._made_dir = False
        try:
            self._fingerprints = json.loads(self._index_file.read_text())
        except (OSError, ValueError):
            self._fingerprints = {}

    def _key(self, name: str, address: str, generation: int) -> str:
        return f"{name}@{address}#{generation}"

    def path(self, name: str, address: str, generation: int) -> Path:
        return self.dir / f"{name}-{address}-{generation}.pem"

    def ensure(self, index: int, name: str, address: str, generation: int = 0) -> str:
        """Make sure the PEM file exists; return its fingerprint."""
        key = self._key(name, address, generation)
        fp = self._fingerprints.get(key)
        path = self.path(name, address, generation)
        if fp is not None and path.exists():
            return fp
        pem, fp = make_certificate(self.seed, index, name, address, generation)
        if not self._made_dir:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._made_dir = True
        tmp = f"{path}.{os.getpid()}.tmp"  # atomic: other processes may share the cache
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._fingerprints[key] = fp
        self._dirty = True
        return fp

    def save(self) -> None:
        if not self._dirty:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        try:  # keep what other processes added meanwhile
            merged = json.loads(self._index_file.read_text())
        except (OSError, ValueError):
            merged = {}
        merged.update(self._fingerprints)
        self._fingerprints = merged
        tmp = self._index_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._fingerprints, indent=0, sort_keys=True))
        tmp.replace(self._index_file)
        self._dirty = False

    def context(self, name: str, address: str, generation: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path(name, address, generation))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx
