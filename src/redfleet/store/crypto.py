"""Credentials encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256) with a key kept outside the database.

The key comes from ``$REDFLEET_KEY`` (a urlsafe-base64 Fernet key), else from the file ``$REDFLEET_KEY_FILE``
(default ``<data dir>/redfleet.key``), which is created with mode 0600 on first use. Several keys may be given,
one per line in the file or separated by commas in the variable: the first encrypts, all decrypt (rotation).

Nothing here prints or logs a key or a password; :class:`Secret` redacts itself in ``repr``/``str``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from redfleet.store.errors import CredentialKeyError
from redfleet.store.paths import data_dir

KEY_ENV = "REDFLEET_KEY"
KEY_FILE_ENV = "REDFLEET_KEY_FILE"


class Secret:
    """A string that does not show itself: ``repr``/``str``/format give ``'***'``; :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:  # never pickled by accident into a log or a cache
        raise TypeError("Secret values are not picklable")


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (first 12 hex digits of its SHA-256), stored beside each secret so
    that a wrong key is reported as such rather than as corrupt data."""
    return hashlib.sha256(key).hexdigest()[:12]


def default_key_file() -> Path:
    env = os.environ.get(KEY_FILE_ENV)
    return Path(env).expanduser() if env else data_dir() / "redfleet.key"


def _parse_keys(text: str, where: str) -> list[bytes]:
    keys: list[bytes] = []
    for raw in text.replace(",", "\n").splitlines():
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        try:
            if len(base64.urlsafe_b64decode(item.encode())) != 32:
                raise ValueError
        except ValueError:
            # The key itself is never echoed; only where it came from and which entry.
            raise CredentialKeyError(
                f"{where}: entry #{len(keys) + 1} is not a Fernet key (32 url-safe base64 bytes); make one with: "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
        keys.append(item.encode())
    if not keys:
        raise CredentialKeyError(f"{where}: no key found")
    return keys


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(Fernet.generate_key().decode() + "\n")


@dataclass(frozen=True)
class KeyRing:
    """The keys in use: ``keys[0]`` encrypts, every key decrypts. ``source`` says where they came from."""

    keys: tuple[bytes, ...] = field(repr=False)
    source: str

    @classmethod
    def from_key(cls, key: str | bytes, source: str = "explicit key") -> KeyRing:
        text = key.decode() if isinstance(key, bytes) else key
        return cls(tuple(_parse_keys(text, source)), source)

    @classmethod
    def load(cls, *, create: bool = True) -> KeyRing:
        """``$REDFLEET_KEY``, else the key file (created 0600 with a new key when ``create`` and absent)."""
        env = os.environ.get(KEY_ENV)
        if env:
            return cls(tuple(_parse_keys(env, f"${KEY_ENV}")), f"${KEY_ENV}")
        path = default_key_file()
        if not path.exists():
            if not create:
                raise CredentialKeyError(f"no key: set ${KEY_ENV} or create the key file {path}")
            _create_key_file(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CredentialKeyError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
        return cls(tuple(_parse_keys(text, f"key file {path}")), f"key file {path}")

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def _fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet().encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, what: str, stored_key_id: str | None = None) -> Secret:
        try:
            return Secret(self._fernet().decrypt(token.encode()).decode())
        except InvalidToken:
            known = {key_id(k) for k in self.keys}
            hint = ""
            if stored_key_id and stored_key_id not in known:
                hint = (
                    f" it was encrypted with key {stored_key_id}, but the key in use ({self.source}) is "
                    f"{', '.join(sorted(known))}"
                )
            raise CredentialKeyError(
                f"{what} cannot be decrypted with the current key;{hint or ' the key is wrong or the data damaged'}."
                f" Set ${KEY_ENV} or ${KEY_FILE_ENV} to the key the store was written with."
            ) from None

    def __repr__(self) -> str:
        return f"KeyRing(keys=<{len(self.keys)} redacted>, source={self.source!r})"
