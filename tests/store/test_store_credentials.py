"""Credentials are encrypted at rest, never shown, and a wrong key is a clear error."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from redfleet.store import CredentialKeyError, FleetStore, KeyRing, Secret

PASSWORDS = ("calvin-S3cret!", "dell-Pa55word")


def test_raw_column_holds_no_password(store, fleet_file, db_url):
    store.import_fleet(fleet_file)
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT name, username, secret, key_id, source FROM credentials")).all()
        assert len(rows) == 2
        for row in rows:
            blob = " ".join(str(v) for v in row)
            assert not any(p in blob for p in PASSWORDS)
            assert row.secret.startswith("gAAAAA")  # a Fernet token
        # Nowhere else either (audit details, endpoints, nodes).
        for table in ("audit_log", "bmc_endpoints", "nodes"):
            dump = " ".join(str(r) for r in conn.execute(text(f"SELECT * FROM {table}")).all())
            assert not any(p in dump for p in PASSWORDS)
    if db_url.startswith("sqlite"):
        store.close()
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
        assert not any(p.encode() in raw for p in PASSWORDS)


def test_credentials_for_and_redaction(store, fleet_file, caplog):
    caplog.set_level(logging.DEBUG)
    store.import_fleet(fleet_file)
    creds = store.credentials_for("dell-001")
    assert creds is not None
    assert creds.username == "admin" and creds.name == "dell"
    assert isinstance(creds.password, Secret) and creds.password.reveal() == "dell-Pa55word"
    for shown in (repr(creds), str(creds), repr(creds.password), str(creds.password), f"{creds.password}",
                  repr(store.keyring), repr(store)):
        assert "dell-Pa55word" not in shown
    assert store.credentials_for("old-001") is None
    assert not any(p in caplog.text for p in PASSWORDS)


def test_wrong_key_is_a_clear_error(db_url, fleet_file, keyring):
    FleetStore(db_url, keyring=keyring).import_fleet(fleet_file)
    other = KeyRing.from_key(Fernet.generate_key())
    store = FleetStore(db_url, keyring=other)
    try:
        with pytest.raises(CredentialKeyError, match=r"credential 'sim' cannot be decrypted.*encrypted with key "
                                                     + keyring.primary_id):
            store.credentials_for("gpu-001")
        before = store.counts()
        with pytest.raises(CredentialKeyError):  # re-import with the wrong key: refused, nothing changed
            store.import_fleet(fleet_file)
        assert store.counts()["credentials"] == before["credentials"]
    finally:
        store.close()
    # Key rotation: the new key first, the old one still decrypts.
    rotated = KeyRing.from_key(",".join([other.keys[0].decode(), keyring.keys[0].decode()]))
    store = FleetStore(db_url, keyring=rotated)
    try:
        creds = store.credentials_for("gpu-001")
        assert creds is not None and creds.password.reveal() == PASSWORDS[0]
    finally:
        store.close()


def test_key_file_created_0600_on_first_use(db_url, fleet_file, tmp_path, monkeypatch):
    key_file = tmp_path / "keys" / "fleet.key"
    monkeypatch.setenv("REDFLEET_KEY_FILE", str(key_file))
    store = FleetStore(db_url)
    try:
        assert not key_file.exists()  # only made when a credential is written
        store.import_fleet(fleet_file)
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        creds = store.credentials_for("gpu-001")
        assert creds is not None and creds.password.reveal() == PASSWORDS[0]
    finally:
        store.close()
    again = FleetStore(db_url)  # a new process reads the same file
    try:
        creds = again.credentials_for("gpu-001")
        assert creds is not None and creds.password.reveal() == PASSWORDS[0]
    finally:
        again.close()


def test_key_from_environment(db_url, fleet_file, monkeypatch, key):
    monkeypatch.setenv("REDFLEET_KEY", key)
    store = FleetStore(db_url)
    try:
        store.import_fleet(fleet_file)
        assert store.keyring.source == "$REDFLEET_KEY"
        assert not Path(os.environ["REDFLEET_KEY_FILE"]).exists()
    finally:
        store.close()


def test_malformed_key_does_not_echo_it(monkeypatch):
    monkeypatch.setenv("REDFLEET_KEY", "not-a-real-key-value-123")
    with pytest.raises(CredentialKeyError) as info:
        KeyRing.load()
    assert "not-a-real-key-value-123" not in str(info.value)
    assert "$REDFLEET_KEY" in str(info.value)


def test_secret_is_not_picklable():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
