"""Files and documents to samples: raw logs, nvme-cli/smartctl JSON, sample records, in-band agent reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from redfleet.predict import DriveModel, LogFormatError, encode_smart
from redfleet.predict.loader import group_by_drive, load_bytes, sample_record

T = datetime(2025, 5, 1, tzinfo=UTC)


def inband_report(node: str = "node-00004", t: float = 30.0) -> dict:
    """Shaped like the simulator's / agent's GET /nodes/{name}/inband document."""
    drives = []
    for i, path in enumerate(("healthy", "media")):
        m = DriveModel(f"{node}/nvme{i}", path, onset_day=10, failure_day=40)
        s = m.state_at(t)
        drives.append({"device": f"/dev/nvme{i}", "serial": s.serial, "model": m.spec.model,
                       "firmware": m.spec.firmware, "smart": s.nvme_cli_smart_json(),
                       "ocp_c0h": s.nvme_cli_ocp_json(4, "snake"),
                       "raw": {"smart_02h": s.smart_log_bytes().hex(), "ocp_c0h": s.ocp_c0_bytes(4).hex()}})
    return {"node": node, "os_state": "up", "nvme": drives}


def test_inband_report():
    doc = inband_report()
    samples = load_bytes(json.dumps(doc).encode(), name="inband.json", collected_at=T)
    assert [s.drive_id for s in samples] == [d["serial"] for d in doc["nvme"]]
    assert all(s.node_id == "node-00004" and s.collected_at == T for s in samples)
    assert samples[1].ocp["log_page_version"] == 4 and samples[1].smart["media_errors"] > 0
    assert samples[0].device["model"] == doc["nvme"][0]["model"]


def test_inband_raw_only_and_bad_hex():
    doc = inband_report()
    for d in doc["nvme"]:
        del d["smart"], d["ocp_c0h"]
    samples = load_bytes(json.dumps(doc).encode(), name="x")
    assert samples[0].smart and samples[0].ocp["log_page_version"] == 4
    doc["nvme"][1]["raw"]["ocp_c0h"] = "zz"
    with pytest.raises(LogFormatError, match=r"x: nvme\[1\]: raw.ocp_c0h: not hexadecimal"):
        load_bytes(json.dumps(doc).encode(), name="x")
    doc["nvme"][1]["raw"]["ocp_c0h"] = "00" * 512
    with pytest.raises(LogFormatError, match="wrong GUID"):
        load_bytes(json.dumps(doc).encode(), name="x")


def test_sample_records_round_trip_as_json_lines():
    m = DriveModel("d", "badblocks", onset_day=1, failure_day=30)
    recs = []
    for day in (0, 7, 14):
        st = m.state_at(day)
        rec = {"drive_id": "d", "collected_at": f"2025-01-{1 + day:02d}T00:00:00Z", "smart": st.smart,
               "ocp": st.ocp_fields(5)}
        recs.append(json.dumps(rec))
    samples = load_bytes("\n".join(recs).encode(), name="h.jsonl")
    assert [s.collected_at.day for s in samples] == [1, 8, 15]
    again = load_bytes(json.dumps([sample_record(s) for s in samples]).encode(), name="h.json")
    assert [(s.smart, s.ocp) for s in again] == [(s.smart, s.ocp) for s in samples]


def test_raw_log_that_starts_like_json():
    raw = bytearray(encode_smart({"critical_warning": 0, "avail_spare": 100, "spare_thresh": 10}))
    raw[0] = ord("{")  # critical warning 0x7B: a raw 02h log whose first byte is "{"
    samples = load_bytes(bytes(raw), name="odd.bin")
    assert samples[0].smart["critical_warning"] == 0x7B


def test_group_by_drive_merges_close_readings():
    smart = load_bytes(encode_smart({"avail_spare": 100}), name="a.bin", drive_id="d", collected_at=T)
    c0 = load_bytes(DriveModel(1, "healthy").state_at(1).ocp_c0_bytes(4), name="b.bin", drive_id="d",
                    collected_at=T.replace(second=30))
    later = load_bytes(encode_smart({"avail_spare": 99}), name="c.bin", drive_id="d",
                       collected_at=T.replace(hour=5))
    grouped = group_by_drive(smart + c0 + later)["d"]
    assert len(grouped) == 2 and grouped[0].smart and grouped[0].ocp and not grouped[1].ocp


@pytest.mark.parametrize(("doc", "reason"), [
    ({"drive_id": "d", "smart": [1]}, "smart: expected an object"),
    ({"drive_id": "d", "collected_at": "soon", "smart": {}}, "not an ISO 8601 time"),
    ({"node": "n", "nvme": [5]}, r"nvme\[0\]: expected an object"),
    ({"node": "n", "nvme": []}, "no health samples"),
])
def test_record_errors(doc, reason):
    with pytest.raises(LogFormatError, match=reason):
        load_bytes(json.dumps(doc).encode(), name="f")
