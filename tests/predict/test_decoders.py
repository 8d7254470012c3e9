"""Raw log decoders against vectors built from the spec tables in ssd_spec_tables (not from the decoder's)."""

from __future__ import annotations

import pytest
from ssd_spec_tables import (
    C0_GUID,
    C0_GUID_BYTES_496_511,
    C0_SPEC,
    NVME_CLI_C0_MEMBER_ORDER,
    NVME_CLI_MEMBER_TO_KEY,
    SMART_SPEC,
    distinct_values,
    spec_c0,
    spec_smart,
)

from redfleet.predict import (
    OCP_C0_FIELDS,
    OCP_C0_GUID_BYTES,
    OCP_VERSION_SPEC,
    LogFormatError,
    decode_ocp_c0,
    decode_raw,
    decode_smart,
    encode_ocp_c0,
    encode_smart,
)

VERSIONS = [2, 3, 4, 5, 6]


def test_guid_bytes_match_the_spec_text():
    assert C0_GUID_BYTES_496_511 == int(C0_GUID.replace("-", ""), 16).to_bytes(16, "little")
    assert OCP_C0_GUID_BYTES == C0_GUID_BYTES_496_511


def test_versions_cover_the_five_spec_revisions():
    assert OCP_VERSION_SPEC == {2: "1.0", 3: "2.0", 4: "2.5", 5: "2.6", 6: "2.7"}


def test_spec_table_follows_nvme_cli_member_order():
    ordered = [key for _last, _first, key, _v in sorted(C0_SPEC, key=lambda row: row[1])]
    assert ordered == [NVME_CLI_MEMBER_TO_KEY.get(m, m) for m in NVME_CLI_C0_MEMBER_ORDER]
    # and no two fields overlap
    used: set[int] = set()
    for last, first, key, _v in C0_SPEC:
        span = set(range(first, last + 1))
        assert not span & used, key
        used |= span


def test_decoder_table_agrees_with_spec_table():
    ours = {f.key: (f.offset, f.size, f.since) for f in OCP_C0_FIELDS}
    theirs = {key: (first, last - first + 1, since) for last, first, key, since in C0_SPEC}
    assert ours == theirs


@pytest.mark.parametrize("version", VERSIONS)
def test_c0_every_field_at_its_offset(version):
    values = distinct_values(C0_SPEC, seed=version)
    raw = spec_c0(values, version)
    assert len(raw) == 512 and raw[496:512] == C0_GUID_BYTES_496_511
    log = decode_ocp_c0(raw)
    assert log.kind == "ocp_c0" and log.version == version
    assert log.spec == OCP_VERSION_SPEC[version]
    assert log.notes == []
    present = {key for _l, _f, key, since in C0_SPEC if since <= version}
    absent = {key for _l, _f, key, since in C0_SPEC if since > version}
    for key in present - {"log_page_version"}:
        assert log.fields[key] == values[key], key
    for key in absent:
        assert key not in log.fields, key
    assert log.fields["log_page_version"] == version
    assert log.fields["log_page_guid"] == "0xafd514c97c6f4f9ca4f2bfea2810afc5"


@pytest.mark.parametrize("version", VERSIONS)
def test_c0_encoder_matches_spec_encoder(version):
    values = distinct_values(C0_SPEC, seed=version + 10)
    present = {k: v for k, v in values.items() if any(key == k and since <= version for _l, _f, key, since in C0_SPEC)}
    assert encode_ocp_c0(present, version) == spec_c0(values, version)


def test_c0_128_bit_counters_are_exact():
    big = (1 << 127) + 12345678901234567890123
    raw = spec_c0({"physical_media_units_written": big, "physical_media_units_read": (1 << 128) - 1,
                   "plp_start_count": 2**64 + 1, "endurance_estimate": 2**100 + 7}, 4)
    f = decode_ocp_c0(raw).fields
    assert f["physical_media_units_written"] == big
    assert f["physical_media_units_read"] == (1 << 128) - 1
    assert f["plp_start_count"] == 2**64 + 1
    assert f["endurance_estimate"] == 2**100 + 7
    assert all(isinstance(f[k], int) for k in ("physical_media_units_written", "endurance_estimate"))


def test_c0_48_and_56_bit_fields_do_not_bleed_into_neighbours():
    raw = spec_c0({"bad_user_nand_blocks_raw": (1 << 48) - 1, "bad_user_nand_blocks_normalized": 0,
                   "refresh_count": (1 << 56) - 1, "system_data_percent_used": 0,
                   "max_user_data_erase_count": 0}, 2)
    f = decode_ocp_c0(raw).fields
    assert f["bad_user_nand_blocks_raw"] == (1 << 48) - 1
    assert f["bad_user_nand_blocks_normalized"] == 0
    assert f["refresh_count"] == (1 << 56) - 1
    assert f["system_data_percent_used"] == 0 and f["max_user_data_erase_count"] == 0


def test_c0_reserved_bytes_set_are_a_note_not_an_error():
    raw = bytearray(spec_c0({"xor_recovery_count": 1}, 4))
    raw[216] = 0x55  # reserved in 2.5, "total media dies" from 2.6 on
    raw[400] = 1  # reserved in every version
    log = decode_ocp_c0(bytes(raw))
    assert "total_media_dies" not in log.fields
    assert any("216" in n and "400" in n for n in log.notes)


@pytest.mark.parametrize("length", [0, 1, 511, 513, 1024, 4096])
def test_wrong_length(length):
    with pytest.raises(LogFormatError, match="wrong length"):
        decode_ocp_c0(bytes(length))
    with pytest.raises(LogFormatError, match="wrong length"):
        decode_smart(bytes(length))
    with pytest.raises(LogFormatError, match="wrong length"):
        decode_raw(bytes(length))


def test_wrong_guid_zero_random_and_byte_swapped():
    good = spec_c0({}, 4)
    zero = good[:496] + bytes(16)
    with pytest.raises(LogFormatError, match="wrong GUID: bytes 496–511 are zero"):
        decode_ocp_c0(zero)
    other = good[:496] + bytes(range(16))
    with pytest.raises(LogFormatError, match="wrong GUID: bytes 496–511 read 0F0E0D0C"):
        decode_ocp_c0(other)
    swapped = good[:496] + C0_GUID_BYTES_496_511[::-1]
    with pytest.raises(LogFormatError, match="byte order"):
        decode_ocp_c0(swapped)


@pytest.mark.parametrize("version", [0, 1, 7, 0x100, 0xFFFF])
def test_unknown_version(version):
    raw = bytearray(spec_c0({}, 4))
    raw[494:496] = version.to_bytes(2, "little")
    with pytest.raises(LogFormatError, match=f"unknown log page version {version}"):
        decode_ocp_c0(bytes(raw))
    with pytest.raises(LogFormatError, match="unknown log page version"):
        decode_raw(bytes(raw))


def test_newer_version_decodes_leniently_when_asked():
    raw = bytearray(spec_c0(distinct_values(C0_SPEC), 6))
    raw[494:496] = (7).to_bytes(2, "little")
    log = decode_ocp_c0(bytes(raw), strict=False)
    assert log.version == 7 and "form_factor" in log.fields
    assert any("newer" in n for n in log.notes)


def test_smart_every_field_at_its_offset():
    values = {k: v for k, v in distinct_values(SMART_SPEC).items()}
    values["avail_spare"], values["spare_thresh"] = 97, 10  # percentages
    raw = spec_smart(values)  # type: ignore[arg-type]
    log = decode_smart(raw)
    assert log.kind == "smart" and log.version is None
    for key, value in values.items():
        assert log.fields[key] == value, key
    assert encode_smart(values) == raw
    assert decode_raw(raw).kind == "smart"


def test_smart_128_bit_counters_exact():
    raw = spec_smart({"data_units_written": 2**70 + 3, "media_errors": 2**64, "power_on_hours": 43_210})
    f = decode_smart(raw).fields
    assert f["data_units_written"] == 2**70 + 3 and f["media_errors"] == 2**64 and f["power_on_hours"] == 43_210


def test_smart_rejects_garbage():
    junk = bytes((i * 37 + 11) % 256 for i in range(512))
    with pytest.raises(LogFormatError, match="reserved bytes"):
        decode_smart(junk)
    with pytest.raises(LogFormatError, match="not an NVMe SMART/Health"):
        decode_raw(junk)
    assert decode_smart(junk, strict=False).notes


def test_smart_rejects_percentages_over_100():
    with pytest.raises(LogFormatError, match="avail_spare is 150"):
        decode_smart(spec_smart({"avail_spare": 150}))


def test_raw_autodetect_and_big_endian_guid_hint():
    assert decode_raw(spec_c0({}, 3)).kind == "ocp_c0"
    raw = spec_c0({}, 3)[:496] + C0_GUID_BYTES_496_511[::-1]
    with pytest.raises(LogFormatError, match="byte order"):
        decode_raw(raw)


def test_encoder_refuses_what_the_version_lacks_and_what_does_not_fit():
    with pytest.raises(ValueError, match="arrived in version 5"):
        encode_ocp_c0({"total_media_dies": 64}, 4)
    assert encode_ocp_c0({"total_media_dies": 64}, 4, drop_unknown=True) == spec_c0({}, 4)
    with pytest.raises(ValueError, match="does not fit"):
        encode_ocp_c0({"bad_user_nand_blocks_raw": 1 << 48}, 4)
    with pytest.raises(ValueError, match="not an OCP C0h field"):
        encode_ocp_c0({"bogus": 1}, 4)
    with pytest.raises(ValueError, match="unknown OCP C0h log page version"):
        encode_ocp_c0({}, 9)
    with pytest.raises(ValueError, match="not an NVMe SMART"):
        encode_smart({"xor_recovery_count": 1})


def test_not_bytes():
    with pytest.raises(LogFormatError, match="expected bytes"):
        decode_raw("not bytes")  # type: ignore[arg-type]
