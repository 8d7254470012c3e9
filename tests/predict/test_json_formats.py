"""nvme-cli (both key styles, several releases) and smartctl JSON: read, cross-check with raw, write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redfleet.predict import (
    LogFormatError,
    decode_ocp_c0,
    decode_smart,
    encode_ocp_c0,
    encode_smart,
    nvme_cli_ocp_c0,
    nvme_cli_smart_log,
    parse_document,
    smartctl_json,
)
from redfleet.predict.jsonfmt import detect, to_int

FIX = Path(__file__).parent / "fixtures"


def load(name: str):
    return json.loads((FIX / name).read_text())


def test_nvme_cli_1x_smart_log():
    log = parse_document(load("nvme-cli-1.16-smart-log.json"))
    assert log.kind == "smart" and log.source_format == "nvme-cli-json"
    f = log.fields
    assert f["temperature"] == 309 and f["avail_spare"] == 100 and f["percent_used"] == 3
    assert f["data_units_written"] == 2718420551 and f["power_on_hours"] == 17432
    assert f["temperature_sensor_3"] == 309
    # through raw and back: the same numbers
    assert decode_smart(encode_smart(f)).fields == {**dict.fromkeys(decode_smart(bytes(512)).fields, 0), **f}


def test_nvme_cli_2x_verbose_critical_warning_object():
    log = parse_document(load("nvme-cli-2.9-smart-log-verbose.json"))
    assert log.fields["critical_warning"] == 4
    assert log.fields["media_errors"] == 1873


def test_smart_log_writer_matches_nvme_cli_key_order():
    doc = load("nvme-cli-1.16-smart-log.json")
    fields = parse_document(doc).fields
    written = nvme_cli_smart_log(fields)
    assert list(written)[: len(doc)] == list(doc)
    assert all(written[k] == doc[k] for k in doc)
    verbose = nvme_cli_smart_log({**fields, "critical_warning": 5}, verbose=True)
    assert verbose["critical_warning"] == {"value": 5, "available_spare": 1, "temp_threshold": 0,
                                           "reliability_degraded": 1, "ro": 0, "vmbu_failed": 0, "pmr_ro": 0}


@pytest.mark.parametrize(("name", "version", "style", "legacy"), [
    ("nvme-cli-2.9-ocp-smart-add-log-v3.json", 3, "human", True),
    ("nvme-cli-2.11-ocp-smart-add-log-v4-human.json", 4, "human", True),
    ("nvme-cli-2.16-ocp-smart-add-log-v5-snake.json", 5, "snake", False),
    ("nvme-cli-3.0-ocp-smart-add-log-v6-human.json", 6, "human", True),
])
def test_nvme_cli_ocp_both_key_styles(name, version, style, legacy):
    doc = load(name)
    log = parse_document(doc)
    assert log.kind == "ocp_c0" and log.version == version
    assert log.source_format == ("nvme-cli-json-legacy" if legacy else "nvme-cli-json")
    assert log.notes == []
    # the same log, raw: encode the JSON's fields for that version, decode, and compare every field
    raw = decode_ocp_c0(encode_ocp_c0(log.fields, version))
    assert raw.fields == log.fields
    # and writing it back in the same style gives nvme-cli's keys, in nvme-cli's order
    written = nvme_cli_ocp_c0(log.fields, style)
    expected_keys = [("NVMe Base Errata Version" if k == "NVMe Errata Version" else k) for k in doc]
    assert list(written) == expected_keys
    assert written[expected_keys[0]] == doc[next(iter(doc))]  # {"hi","lo"} kept as nvme-cli prints it


def test_ocp_values_from_fixtures():
    v4 = parse_document(load("nvme-cli-2.11-ocp-smart-add-log-v4-human.json")).fields
    assert v4["bad_user_nand_blocks_raw"] == 1287 and v4["uncorrectable_read_errors"] == 142
    assert v4["physical_media_units_written"] == 9182376004665344
    assert v4["lowest_permitted_firmware_revision"] == 3544385890265608242
    assert "total_media_dies" not in v4
    v3 = parse_document(load("nvme-cli-2.9-ocp-smart-add-log-v3.json")).fields
    assert v3["nvme_base_errata_version"] == 99  # printed as "NVMe Errata Version" by nvme-cli <= 2.9
    v5 = parse_document(load("nvme-cli-2.16-ocp-smart-add-log-v5-snake.json")).fields
    assert v5["dssd_firmware_build_uuid"] == "3e0f7b52-8c2d-4b11-9d6a-5a8e21c4f0d7"
    assert v5["sys_area_program_fail_count_noralized"] == 100
    v6 = parse_document(load("nvme-cli-3.0-ocp-smart-add-log-v6-human.json")).fields
    assert v6["form_factor"] == 2 and v6["die_in_use_bad_nand_block_raw"] == 401 and v6["media_dies_offline"] == 1


def test_smartctl_nvme():
    log = parse_document(load("smartctl-7.4-nvme.json"))
    assert log.kind == "smart" and log.source_format == "smartctl-json"
    f = log.fields
    assert f["temperature"] == 41 + 273 and f["temperature_sensor_2"] == 47 + 273
    assert f["avail_spare"] == 100 and f["spare_thresh"] == 10 and f["percent_used"] == 7
    assert f["host_read_commands"] == 113092736251 and f["power_on_hours"] == 26101
    assert log.device == {"model": "SAMPLE DC NVMe 7.68TB U.3", "serial": "S6CKNG0W401122", "firmware": "GDC7302Q"}
    failing = parse_document(load("smartctl-7.4-nvme-failing.json")).fields
    assert failing["critical_warning"] == 13 and failing["media_errors"] == 14920


def test_smartctl_128_bit_strings_preferred():
    doc = smartctl_json({"data_units_written": 2**65 + 9, "avail_spare": 100, "spare_thresh": 10})
    log = doc["nvme_smart_health_information_log"]
    assert log["data_units_written_s"] == str(2**65 + 9)
    log["data_units_written"] = 3.6893488147419103e19  # a JSON reader that went through float
    assert parse_document(doc).fields["data_units_written"] == 2**65 + 9


def test_smartctl_writer_round_trip():
    fields = parse_document(load("smartctl-7.4-nvme.json")).fields
    again = parse_document(smartctl_json(fields, model="m", serial="s", firmware="f")).fields
    assert again == fields


def test_smartctl_ata_is_refused():
    with pytest.raises(LogFormatError, match="protocol is 'ATA'"):
        parse_document(load("smartctl-7.3-ata.json"))


def test_smartctl_without_log_reports_messages():
    doc = {"smartctl": {"messages": [{"string": "/dev/nvme9: Unable to detect device type"}], "exit_status": 1}}
    with pytest.raises(LogFormatError, match="Unable to detect device type"):
        parse_document(doc)


def test_detect():
    assert detect(load("smartctl-7.4-nvme.json")) == "smartctl"
    assert detect(load("nvme-cli-1.16-smart-log.json")) == "nvme-smart-log"
    assert detect(load("nvme-cli-2.9-ocp-smart-add-log-v3.json")) == "nvme-ocp-c0"
    assert detect([1, 2]) is None and detect({"hello": 1}) is None


def test_ocp_json_errors():
    doc = load("nvme-cli-2.16-ocp-smart-add-log-v5-snake.json")
    with pytest.raises(LogFormatError, match="wrong GUID"):
        parse_document({**doc, "log_page_guid": "0x0"})
    no_guid = {k: v for k, v in doc.items() if k != "log_page_guid"}
    with pytest.raises(LogFormatError, match="no log page GUID"):
        parse_document(no_guid)
    with pytest.raises(LogFormatError, match="unknown log page version 1"):
        parse_document({**doc, "log_page_version": 1})
    no_version = {k: v for k, v in doc.items() if k != "log_page_version"}
    with pytest.raises(LogFormatError, match="no log page version"):
        parse_document(no_version)
    with pytest.raises(LogFormatError, match="missing xor_recovery_count"):
        parse_document({k: v for k, v in doc.items() if k != "xor_recovery_count"})
    with pytest.raises(LogFormatError, match="not a number"):
        parse_document({**doc, "xor_recovery_count": "lots"})
    with pytest.raises(LogFormatError, match="not nvme-cli"):
        parse_document({"foo": 1})


def test_guid_spellings_accepted():
    doc = load("nvme-cli-2.16-ocp-smart-add-log-v5-snake.json")
    for guid in ("AFD514C9-7C6F-4F9C-A4F2-BFEA2810AFC5", "afd514c97c6f4f9ca4f2bfea2810afc5"):
        assert parse_document({**doc, "log_page_guid": guid}).version == 5


def test_version_field_mismatch_is_noted():
    doc = load("nvme-cli-2.11-ocp-smart-add-log-v4-human.json")
    log = parse_document({**doc, "Total media dies": 64})
    assert any("total_media_dies" in n for n in log.notes)


def test_smart_log_json_errors():
    doc = load("nvme-cli-1.16-smart-log.json")
    with pytest.raises(LogFormatError, match="avail_spare is 300"):
        parse_document({**doc, "avail_spare": 300})
    with pytest.raises(LogFormatError, match="missing percent_used"):
        parse_document({k: v for k, v in doc.items() if k != "percent_used"})


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5), (5.0, 5), ("17", 17), ("0x10", 16), ("1,234", 1234), ({"hi": 1, "lo": 2}, (1 << 64) | 2),
    ({"value": 3}, 3), (True, 1),
])
def test_to_int(value, expected):
    assert to_int(value) == expected


@pytest.mark.parametrize("value", [5.5, "abc", None, [1], float("nan")])
def test_to_int_rejects(value):
    with pytest.raises(LogFormatError):
        to_int(value)
