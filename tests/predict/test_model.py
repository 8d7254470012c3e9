"""The degradation model: deterministic, monotone counters, the four paths behave as described."""

from __future__ import annotations

import pytest

from redfleet.predict import PATHS, DriveModel, decode_ocp_c0, decode_smart, parse_document
from redfleet.predict.features import COUNTERS

OCP_COUNTERS = ("bad_user_nand_blocks_raw", "bad_system_nand_blocks_raw", "xor_recovery_count",
                "uncorrectable_read_errors", "soft_ecc_error_count", "end_to_end_detected_errors",
                "pcie_correctable_errors", "physical_media_units_written", "max_user_data_erase_count")
SMART_COUNTERS = ("media_errors", "num_err_log_entries", "power_on_hours", "data_units_written", "power_cycles")


@pytest.mark.parametrize("path", PATHS)
def test_deterministic_and_order_independent(path):
    a, b = DriveModel("n1/nvme0", path), DriveModel("n1/nvme0", path)
    days = [0, 400, 13.5, 200, 7, 365]
    forward = [a.state_at(t).ocp for t in days]
    backward = [b.state_at(t).ocp for t in reversed(days)][::-1]
    assert forward == backward
    assert DriveModel("n1/nvme0", path).state_at(50).smart == a.state_at(50).smart
    assert DriveModel("n1/nvme1", path).state_at(50).ocp != a.state_at(50).ocp


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counters_never_decrease(path, seed):
    m = DriveModel(seed, path)
    prev = None
    for t in range(0, 500, 3):
        s = m.state_at(t)
        if prev is not None:
            for key in OCP_COUNTERS:
                assert s.ocp[key] >= prev.ocp[key], (key, t)
            for key in SMART_COUNTERS:
                assert s.smart[key] >= prev.smart[key], (key, t)
            assert s.smart["avail_spare"] <= prev.smart["avail_spare"]
            assert s.smart["percent_used"] >= prev.smart["percent_used"]
        prev = s
    assert set(COUNTERS)  # the feature module's counters exist


def test_paths_degrade_as_described():
    wear = DriveModel(5, "wearout")
    assert wear.failure_day is not None
    end = wear.state_at(wear.failure_day)
    assert end.failed and end.smart["percent_used"] >= 100 and end.smart["critical_warning"] & 0x08
    assert end.smart["avail_spare"] <= 15
    bb = DriveModel(5, "badblocks")
    before, after = bb.state_at(bb.onset_day - 1), bb.state_at(bb.failure_day - 1)
    assert after.ocp["bad_user_nand_blocks_raw"] > 10 * max(before.ocp["bad_user_nand_blocks_raw"], 1)
    media = DriveModel(5, "media")
    pre, post = media.state_at(media.onset_day - 0.5), media.state_at(media.onset_day + 1.5)
    assert post.ocp["uncorrectable_read_errors"] - pre.ocp["uncorrectable_read_errors"] >= 5
    assert post.smart["critical_warning"] & 0x04
    healthy = DriveModel(5, "healthy")
    assert healthy.failure_day is None and not healthy.state_at(1000).failed


def test_overrides_and_bad_arguments():
    m = DriveModel(1, "badblocks", onset_day=10, failure_day=40, age_days=100)
    assert (m.onset_day, m.failure_day, m.age_days) == (10, 40, 100)
    with pytest.raises(ValueError, match="path must be one of"):
        DriveModel(1, "exploding")
    with pytest.raises(ValueError, match="failure_day"):
        DriveModel(1, "media", onset_day=50, failure_day=10)
    with pytest.raises(ValueError):
        m.state_at(-1)


@pytest.mark.parametrize("version", [2, 3, 4, 5, 6])
def test_state_renders_every_format(version):
    s = DriveModel(9, "badblocks").state_at(120)
    c0 = decode_ocp_c0(s.ocp_c0_bytes(version))
    assert c0.version == version and c0.fields == s.ocp_fields(version) | {"log_page_guid": c0.fields["log_page_guid"]}
    assert decode_smart(s.smart_log_bytes()).fields["media_errors"] == s.smart["media_errors"]
    for style in ("snake", "human"):
        assert parse_document(s.nvme_cli_ocp_json(version, style)).fields == c0.fields
    assert parse_document(s.smartctl_json()).fields["avail_spare"] == s.smart["avail_spare"]
    assert parse_document(s.nvme_cli_smart_json()).fields["power_on_hours"] == s.smart["power_on_hours"]
