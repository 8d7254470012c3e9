"""Fleet file import: idempotent, updates what changed, all or nothing, nothing stored is lost."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from redfleet.model.fleetfile import FleetFileError
from redfleet.store import FleetStore, StoreError
from redfleet.store.models import Node


def _state(store: FleetStore) -> list[dict]:
    out = []
    for n in store.nodes():
        d = n.to_dict()
        d.pop("updated_at")
        out.append(d)
    return out


def test_import_then_reimport_changes_nothing(store, fleet_file):
    first = store.import_fleet(fleet_file)
    assert sorted(first.added) == ["dell-001", "gpu-001", "gpu-002", "old-001"]
    assert first.updated == [] and first.unchanged == []
    assert sorted(first.credentials_added) == ["dell", "sim"]
    snapshot = [n.to_dict() for n in store.nodes()]
    counts = store.counts()

    again = store.import_fleet(fleet_file)
    assert again.added == [] and again.updated == [] and again.credentials_updated == []
    assert sorted(again.unchanged) == ["dell-001", "gpu-001", "gpu-002", "old-001"]
    assert [n.to_dict() for n in store.nodes()] == snapshot  # not even updated_at moved
    after = store.counts()
    assert after["audit_log"] == counts["audit_log"] + 1  # only the import itself is audited
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in counts.items() if k != "audit_log"}

    node = store.node("gpu-001")
    assert node.bmc_url == "https://127.14.0.1:8443"
    assert node.tags == ("gpu", "h100") and node.rack == "r01" and node.position == 1 and node.flavor == "hgx"
    assert node.credential == "sim" and node.state == "active"
    assert store.node("old-001").credential is None


def test_csv_import_is_idempotent(store, tmp_path):
    csv = tmp_path / "fleet.csv"
    csv.write_text("name,bmc_url,rack,position,tags\nc1,https://127.14.1.1,r9,1,gpu;a100\nc2,ipmi://127.14.1.2,r9,2,\n")
    assert sorted(store.import_fleet(csv).added) == ["c1", "c2"]
    assert sorted(store.import_fleet(csv).unchanged) == ["c1", "c2"]
    assert store.node("c1").tags == ("gpu", "a100")


def test_changed_row_updates(store, fleet_file, fleet_yaml, tmp_path):
    store.import_fleet(fleet_file)
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        fleet_yaml.replace("rack: r01, position: 2", "rack: r03, position: 7")
        .replace('"https://127.14.0.3:8443"', '"https://127.14.0.33:8443"')
        .replace("calvin-S3cret!", "new-Secret")
    )
    result = store.import_fleet(changed, reason="moved gpu-002")
    assert result.updated == ["gpu-002", "dell-001"]
    assert result.changes == {"gpu-002": ["rack", "position"], "dell-001": ["bmc_url"]}
    assert result.credentials_updated == ["sim"]
    assert sorted(result.unchanged) == ["gpu-001", "old-001"]
    assert store.node("gpu-002").rack == "r03"
    assert store.node("dell-001").bmc_url == "https://127.14.0.33:8443"
    creds = store.credentials_for("gpu-001")
    assert creds is not None and creds.password.reveal() == "new-Secret"
    audit = store.audit_log(target="gpu-002")
    assert audit[0].action == "node.update" and audit[0].reason == "moved gpu-002" and audit[0].actor == "tester"
    assert audit[0].details and audit[0].details["fields"] == ["rack", "position"]


def test_nodes_missing_from_file_are_kept(store, fleet_file, tmp_path):
    store.import_fleet(fleet_file)
    partial = tmp_path / "partial.yaml"
    partial.write_text("nodes: [{name: gpu-001, bmc_url: 'https://127.14.0.1:8443', rack: r01, position: 1}]\n")
    result = store.import_fleet(partial)
    assert result.absent == ["dell-001", "gpu-002", "old-001"]
    assert len(store.nodes()) == 4


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{fleet}" + "  - {name: bad-1, bmc_url: 'ftp://127.14.0.9'}\n", r"node #5 \(bad-1\)\.bmc_url"),
        ("{fleet}" + "  - {name: gpu-001, bmc_url: 'https://127.14.0.9'}\n", "appears twice"),
        ("{fleet}" + "  - {name: bad-2, bmc_url: 'https://127.14.0.9', credential: nope}\n", "unknown credential"),
        ("{fleet}" + "  - {name: bad-3, bmc_url: 'https://127.14.0.9', position: many}\n", r"node #5 \(bad-3\)"),
        ("{fleet}" + "  - {name: " + "x" * 300 + ", bmc_url: 'https://127.14.0.9'}\n", "longer than 200"),
        ("{fleet}" + "  - {name: bad-4, bmc_url: 'https://127.14.0.1:8443', credential: dell}\n",
         r"node #5 \(bad-4\): shares BMC https://127.14.0.1:8443 with node #1 \(gpu-001\)"),
        ("{fleet}" + "  - {name: bad-5, bmc_url: 'https://127.14.0.9', tls_fingerprint: 'sha256:zz'}\n",
         r"node #5 \(bad-5\): not a SHA-256 fingerprint"),
        ("nodes: {not: a list}\n", "nodes"),
        ("nodes: [\n", "not valid YAML"),
    ],
)
def test_bad_file_is_rejected_whole_and_loses_nothing(store, fleet_file, fleet_yaml, tmp_path, text, match):
    store.import_fleet(fleet_file)
    before, counts = _state(store), store.counts()
    bad = tmp_path / "bad.yaml"
    # The good rows change too, so a partial import would show.
    bad.write_text(text.replace("{fleet}", fleet_yaml).replace("rack: r01", "rack: r77"))
    with pytest.raises(FleetFileError, match=match):
        store.import_fleet(bad)
    assert _state(store) == before
    after = store.counts()
    assert after["audit_log"] == counts["audit_log"] + 1
    assert store.audit_log(limit=1)[0].result == "error"
    assert store.audit_log(limit=1)[0].action == "fleet.import"


def test_unresolvable_password_is_rejected(store, fleet_file, monkeypatch):
    monkeypatch.delenv("RF_TEST_DELL_PW")
    with pytest.raises(FleetFileError, match=r"credential 'dell'.*RF_TEST_DELL_PW"):
        store.import_fleet(fleet_file)
    assert store.nodes() == []
    assert store.counts()["credentials"] == 0


def test_failure_while_writing_rolls_everything_back(store, fleet_file, fleet_yaml, tmp_path, monkeypatch):
    """A database error halfway through an import (after some rows were written) leaves the store as it was."""
    store.import_fleet(fleet_file)
    before = _state(store)
    changed = tmp_path / "changed.yaml"
    changed.write_text(fleet_yaml.replace("r01", "r55") + "  - {name: new-1, bmc_url: 'https://127.14.0.10'}\n")

    real_audit = FleetStore._audit

    def failing_audit(self, session, action, target, **kw):
        if action == "node.add":  # by then gpu-001/002 were updated and flushed
            session.flush()
            session.add(Node(name="gpu-001", state="active", tags=[]))  # duplicate name: IntegrityError
            session.flush()
        return real_audit(self, session, action, target, **kw)

    monkeypatch.setattr(FleetStore, "_audit", failing_audit)
    with pytest.raises((StoreError, Exception)):
        store.import_fleet(changed)
    monkeypatch.setattr(FleetStore, "_audit", real_audit)
    assert _state(store) == before
    with store._read() as session:
        assert session.scalar(select(Node).where(Node.name == "new-1")) is None


def test_fleet_file_fingerprint_becomes_the_pin(store, tmp_path):
    fp = "sha256:" + "ab" * 32
    f = tmp_path / "pinned.yaml"
    f.write_text(f"nodes: [{{name: p1, bmc_url: 'https://127.14.2.1', tls_fingerprint: '{fp.upper()}'}}]\n")
    store.import_fleet(f)
    assert store.node("p1").tls_fingerprint == fp
    assert store.pin_store().get("https://127.14.2.1:443/redfish/v1") == fp
    assert store.import_fleet(f).unchanged == ["p1"]
