"""``redfleet fleet import|list|history|certs|accept-cert|migrate`` on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from redfleet.cli import fleet

FLEET = """
credentials:
  sim: {username: root, password: "cli-S3cret"}
nodes:
  - {name: n1, bmc_url: "https://127.14.3.1:8443", credential: sim, rack: r1, position: 1, tags: [gpu]}
  - {name: n2, bmc_url: "https://127.14.3.2:8443", credential: sim, rack: r1, position: 2}
"""


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    fleet.register(root)
    return root


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REDFLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDFLEET_KEY_FILE", str(tmp_path / "data" / "key"))
    monkeypatch.delenv("REDFLEET_KEY", raising=False)
    monkeypatch.setenv("REDFLEET_DB", str(tmp_path / "fleet.db"))
    (tmp_path / "fleet.yaml").write_text(FLEET)
    return tmp_path


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_import_prints_counts_and_is_idempotent(app, env):
    first = run(app, "fleet", "import", str(env / "fleet.yaml"))
    assert first.exit_code == 0, first.output
    assert "added" in first.output and "n1, n2" in first.output
    assert "cli-S3cret" not in first.output
    again = run(app, "fleet", "import", str(env / "fleet.yaml"), "--json")
    assert again.exit_code == 0
    data = json.loads(again.output)
    assert data["added"] == [] and data["updated"] == [] and sorted(data["unchanged"]) == ["n1", "n2"]


def test_list_json_and_table(app, env):
    assert run(app, "fleet", "import", str(env / "fleet.yaml")).exit_code == 0
    out = run(app, "fleet", "list", "--json")
    assert out.exit_code == 0
    nodes = json.loads(out.output)
    assert [n["name"] for n in nodes] == ["n1", "n2"]
    assert nodes[0]["bmc_url"] == "https://127.14.3.1:8443" and nodes[0]["tags"] == ["gpu"]
    assert nodes[0]["credential"] == "sim" and "password" not in json.dumps(nodes)
    table = run(app, "fleet", "list")
    assert table.exit_code == 0 and "n1" in table.output and "2 node(s)" in table.output


def test_bad_input_exits_2_and_keeps_the_store(app, env):
    assert run(app, "fleet", "import", str(env / "fleet.yaml")).exit_code == 0
    bad = env / "bad.yaml"
    bad.write_text(FLEET.replace("r1", "r9") + "  - {name: n3, bmc_url: 'ftp://127.14.3.3'}\n")
    out = run(app, "fleet", "import", str(bad), "--json")
    assert out.exit_code == 2
    assert "node #3 (n3).bmc_url" in json.loads(out.output.splitlines()[0])["error"]
    assert {n["rack"] for n in json.loads(run(app, "fleet", "list", "--json").output)} == {"r1"}
    assert run(app, "fleet", "import", str(env / "missing.yaml")).exit_code == 2
    assert run(app, "fleet", "history", "ghost").exit_code == 2


def test_unreachable_database_exits_1(app, env):
    out = run(app, "fleet", "list", "--db", "postgresql+psycopg://postgres@127.14.3.250:1/none?connect_timeout=2")
    assert out.exit_code == 1
    assert "cannot open the fleet database" in out.output


def test_wrong_key_exits_1(app, env, monkeypatch):
    assert run(app, "fleet", "import", str(env / "fleet.yaml")).exit_code == 0
    from cryptography.fernet import Fernet

    monkeypatch.setenv("REDFLEET_KEY", Fernet.generate_key().decode())
    out = run(app, "fleet", "import", str(env / "fleet.yaml"))
    assert out.exit_code == 1
    assert "cannot be decrypted with the current key" in out.output


def test_history_certs_accept_and_migrate(app, env):
    from redfleet.store import FleetStore

    assert run(app, "fleet", "migrate").exit_code == 0
    assert run(app, "fleet", "import", str(env / "fleet.yaml")).exit_code == 0
    with FleetStore() as store:
        store.record_inventory("n1", {"gpus": [{"location": "SXM1", "serial": "A"}]})
        store.record_inventory("n1", {"gpus": [{"location": "SXM1", "serial": "B"}]})
        pins = store.pin_store()
        pins.put("https://127.14.3.1:8443", "sha256:" + "1" * 64)
        pins.record_pending("https://127.14.3.1:8443", "sha256:" + "2" * 64)
    hist = run(app, "fleet", "history", "n1", "--json")
    assert hist.exit_code == 0
    assert [c["summary"] for c in json.loads(hist.output)] == ["GPU SXM1 replaced: serial A → B"]
    certs = json.loads(run(app, "fleet", "certs", "--json").output)
    assert certs[0]["nodes"] == ["n1"] and certs[0]["pending"] == "sha256:" + "2" * 64
    wrong = run(app, "fleet", "accept-cert", "n1", "--fingerprint", "sha256:" + "3" * 64)
    assert wrong.exit_code == 2
    ok = run(app, "fleet", "accept-cert", "n1", "--json")
    assert ok.exit_code == 0 and json.loads(ok.output)["pinned"] == "sha256:" + "2" * 64
    assert json.loads(run(app, "fleet", "certs", "--json").output) == []
