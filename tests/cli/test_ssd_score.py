"""``redfleet ssd score|rank|thresholds``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from redfleet.cli import ssd
from redfleet.predict import DriveModel

FIX = Path(__file__).parent.parent / "predict" / "fixtures"


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    ssd.register(root)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner, app, *args):
    return runner.invoke(app, ["ssd", *args])


def test_score_raw_c0_json_uses_nvme_cli_keys(runner, app, tmp_path):
    state = DriveModel(11, "badblocks", onset_day=1, failure_day=20).state_at(19)
    fields = dict(state.ocp_fields(4))
    fields["physical_media_units_written"] = 2**80 + 5  # beyond 64 bits: printed as an exact integer
    from redfleet.predict import encode_ocp_c0

    f = tmp_path / "c0.bin"
    f.write_bytes(encode_ocp_c0(fields, 4))
    r = run(runner, app, "score", str(f), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    for key in ("xor_recovery_count", "bad_user_nand_blocks_raw", "uncorrectable_read_errors", "log_page_version",
                "soft_ecc_error_count", "pcie_correctable_errors", "end_to_end_detected_errors"):
        assert key in doc
    assert doc["physical_media_units_written"] == 2**80 + 5
    assert doc["log_page_version"] == 4 and doc["kind"] == "ocp_c0"
    assert 0 <= doc["risk"] <= 1 and doc["recommendation"] in ("REPLACE", "WATCH", "MONITOR")
    assert isinstance(doc["reasons"], list) and doc["reasons"]
    assert "total_media_dies" not in doc  # not in a version 4 log


def test_score_every_fixture_format(runner, app):
    files = [str(p) for p in sorted(FIX.glob("*.json")) if "ata" not in p.name] + [str(FIX / "history-wearout.jsonl")]
    r = run(runner, app, "score", *files, "--json")
    assert r.exit_code == 0, r.output
    docs = {d["drive_id"]: d for d in json.loads(r.output)}
    assert docs["PHAB1234000X3P8EGN"]["recommendation"] == "REPLACE"  # smartctl, read-only media
    hist = docs["node-00007/nvme2"]
    assert hist["samples"] == 3 and hist["recommendation"] in ("WATCH", "REPLACE")
    assert any("growing by" in t for t in hist["reasons"])
    assert docs["nvme-cli-2.16-ocp-smart-add-log-v5-snake"]["recommendation"] == "MONITOR"


def test_human_output(runner, app):
    r = run(runner, app, "score", str(FIX / "smartctl-7.4-nvme-failing.json"))
    assert r.exit_code == 0
    assert "REPLACE" in r.output and "read-only" in r.output


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"\x00" * 100, "wrong length"),
    (b"{not json", "invalid JSON"),
    (b'{"hello": 1}', "not nvme-cli"),
    (bytes((i * 37 + 11) % 256 for i in range(512)), "not an NVMe SMART/Health (02h) log"),
])
def test_invalid_file_exits_2_with_reason(runner, app, tmp_path, content, reason):
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    r = run(runner, app, "score", str(f))
    assert r.exit_code == 2
    assert reason in r.output
    r = run(runner, app, "score", str(f), "--json")
    assert r.exit_code == 2
    doc = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert doc["exit_code"] == 2 and reason in doc["errors"][0]


def test_wrong_guid_and_version(runner, app, tmp_path):
    raw = bytearray(DriveModel(1, "healthy").state_at(1).ocp_c0_bytes(4))
    raw[494] = 8
    f = tmp_path / "v8.bin"
    f.write_bytes(bytes(raw))
    r = run(runner, app, "score", str(f))
    assert r.exit_code == 2 and "unknown log page version 8" in r.output
    doc = json.loads((FIX / "nvme-cli-2.16-ocp-smart-add-log-v5-snake.json").read_text())
    doc["log_page_guid"] = "0x1234"
    g = tmp_path / "guid.json"
    g.write_text(json.dumps(doc))
    r = run(runner, app, "score", str(g))
    assert r.exit_code == 2 and "wrong GUID" in r.output


def test_missing_file(runner, app, tmp_path):
    r = run(runner, app, "score", str(tmp_path / "nope.bin"))
    assert r.exit_code == 2 and "cannot read" in r.output


def test_drive_option_merges_logs(runner, app, tmp_path):
    s = DriveModel(2, "media", onset_day=3, failure_day=30).state_at(5)
    (tmp_path / "a.bin").write_bytes(s.smart_log_bytes())
    (tmp_path / "b.bin").write_bytes(s.ocp_c0_bytes(5))
    r = run(runner, app, "score", "--drive", "n7/nvme1", str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["drive_id"] == "n7/nvme1" and doc["kind"] == "smart+ocp_c0"
    assert "media_errors" in doc and "xor_recovery_count" in doc
    assert doc["recommendation"] == "REPLACE"


def test_thresholds_file(runner, app, tmp_path):
    th = tmp_path / "th.yaml"
    th.write_text("replace_at: 1.0\nwatch_at: 1.0\n")
    r = run(runner, app, "score", str(FIX / "smartctl-7.4-nvme-failing.json"), "--thresholds", str(th), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["recommendation"] == "MONITOR"
    th.write_text("bogus: 1\n")
    r = run(runner, app, "score", str(FIX / "smartctl-7.4-nvme.json"), "--thresholds", str(th))
    assert r.exit_code == 2 and "bogus" in r.output
    r = run(runner, app, "thresholds")
    assert r.exit_code == 0 and "replace_at: 0.75" in r.output


def test_record_then_rank_and_budget(runner, app, tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    src = tmp_path / "hist.jsonl"
    shutil.copy(FIX / "history-wearout.jsonl", src)
    # shift the history to end today so that the default --days window holds it
    from datetime import UTC, datetime, timedelta

    lines = [json.loads(x) for x in src.read_text().splitlines()]
    now = datetime.now(UTC)
    for i, rec in enumerate(lines):
        rec["collected_at"] = (now - timedelta(days=7 * (len(lines) - 1 - i))).isoformat()
    src.write_text("\n".join(json.dumps(x) for x in lines))
    r = run(runner, app, "score", str(src), str(FIX / "smartctl-7.4-nvme.json"), "--record", "--db", db)
    assert r.exit_code == 0, r.output
    r = run(runner, app, "rank", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    ranked = json.loads(r.output)
    assert ranked[0]["drive_id"] == "node-00007/nvme2" and ranked[0]["node_id"] == "node-00007"
    assert len(ranked) == 2
    r = run(runner, app, "rank", "--db", db, "-k", "1", "--json")
    plan = json.loads(r.output)
    assert [d["drive_id"] for d in plan["replace"]] == ["node-00007/nvme2"]
    r = run(runner, app, "rank", "--db", db, "-k", "1")
    assert r.exit_code == 0 and "node-00007/nvme2" in r.output
    r = run(runner, app, "rank", "--db", db)
    assert r.exit_code == 0 and "S6CKNG0W401122" in r.output
