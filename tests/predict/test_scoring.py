"""Scoring: levels, trends, reasons in words, thresholds from YAML, fleet ranking and budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from redfleet.predict import DriveModel
from redfleet.predict.features import extract, project_days
from redfleet.predict.fleet import rank, replacement_budget, score_fleet
from redfleet.predict.scoring import Thresholds, combine, point, score_history, score_snapshot

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HEALTHY_SMART = {"critical_warning": 0, "avail_spare": 100, "spare_thresh": 10, "percent_used": 12,
                 "media_errors": 0, "temperature": 310}


def history(model: DriveModel, end: float, days: int = 35, step: float = 1.0):
    start = max(0.0, end - days)
    out = []
    t = start
    while t <= end + 1e-9:
        s = model.state_at(t)
        out.append(point(T0 + timedelta(days=t), s.smart, s.ocp))
        t += step
    return out


def test_healthy_snapshot_is_monitor():
    a = score_snapshot(HEALTHY_SMART, None)
    assert a.recommendation == "MONITOR" and a.risk == 0
    assert a.reason_texts() == ["no warning signs in the health logs"]


@pytest.mark.parametrize(("cw", "expected", "words"), [
    (0x01, "REPLACE", "available spare has fallen below"),
    (0x04, "REPLACE", "reliability degraded"),
    (0x08, "REPLACE", "read-only"),
    (0x02, "MONITOR", "temperature"),
])
def test_critical_warnings(cw, expected, words):
    a = score_snapshot({**HEALTHY_SMART, "critical_warning": cw}, None)
    assert a.recommendation == expected
    assert any(words in t for t in a.reason_texts())


def test_spare_vs_threshold_levels():
    assert score_snapshot({**HEALTHY_SMART, "avail_spare": 5}, None).recommendation == "REPLACE"
    near = score_snapshot({**HEALTHY_SMART, "avail_spare": 18}, None)
    assert near.recommendation == "WATCH" and "within 8 points" in near.reason_texts()[0]


def test_worn_out_is_watch_not_replace():
    a = score_snapshot({**HEALTHY_SMART, "percent_used": 104}, None)
    assert a.recommendation == "WATCH" and "rated endurance is consumed" in a.reason_texts()[0]


def test_single_uncorrectable_is_weak_many_are_strong():
    one = score_snapshot({**HEALTHY_SMART, "media_errors": 1}, None)
    assert one.recommendation == "MONITOR" and one.risk > 0
    many = score_snapshot({**HEALTHY_SMART, "media_errors": 25}, None)
    assert many.recommendation == "WATCH"
    lots = score_snapshot({**HEALTHY_SMART, "media_errors": 5000}, None)
    assert lots.recommendation == "REPLACE"


def test_level_and_trend_of_one_signal_counted_once_each_group():
    reasons = score_snapshot({**HEALTHY_SMART, "media_errors": 25}, {"uncorrectable_read_errors": 30}).reasons
    assert len([r for r in reasons if r.group == "ue_level"]) == 1


@pytest.mark.parametrize("path", ["wearout", "badblocks"])
@pytest.mark.parametrize("seed", range(4))
def test_gradual_paths_flagged_before_failure(path, seed):
    m = DriveModel(seed, path)
    assert m.failure_day is not None
    a = score_history(history(m, m.failure_day - 7), drive_id="d")
    assert a.recommendation == "REPLACE", a.reason_texts()
    assert a.features is not None and a.features.points > 2


@pytest.mark.parametrize("seed", range(4))
def test_healthy_paths_stay_quiet(seed):
    m = DriveModel(seed, "healthy", age_days=400)
    a = score_history(history(m, 300))
    assert a.recommendation == "MONITOR", a.reason_texts()


def test_media_burst_replace_within_days():
    m = DriveModel(3, "media")
    assert m.onset_day is not None
    before = score_history(history(m, m.onset_day - 1))
    after = score_history(history(m, m.onset_day + 1))
    assert before.recommendation == "MONITOR"
    assert after.recommendation == "REPLACE"
    assert any("new uncorrectable errors" in t for t in after.reason_texts())


def test_bad_block_trend_words_and_acceleration():
    pts = [point(T0 + timedelta(days=d), HEALTHY_SMART, {"bad_user_nand_blocks_raw": int(2 ** (d / 3))})
           for d in range(0, 22)]
    a = score_history(pts)
    assert any("growing by" in t and "accelerating" in t for t in a.reason_texts())
    f = extract(pts)
    assert f.trends["bad_user_blocks"].accel > 0 and f.trends["bad_user_blocks"].slope_short > 1


def test_spare_projection():
    pts = [point(T0 + timedelta(days=d), {**HEALTHY_SMART, "avail_spare": 60 - d}, {}) for d in range(0, 15)]
    a = score_history(pts)
    assert any("reaches its threshold in about 36 days" in t for t in a.reason_texts())
    assert a.recommendation == "WATCH"
    fast = [point(T0 + timedelta(days=d), {**HEALTHY_SMART, "avail_spare": 70 - 3 * d}, {}) for d in range(0, 15)]
    assert score_history(fast).recommendation == "REPLACE"


def test_restarted_counter_is_not_negative_growth():
    pts = [point(T0 + timedelta(days=d), HEALTHY_SMART, {"pcie_correctable_errors": v})
           for d, v in enumerate([5000, 5100, 3, 10])]
    f = extract(pts)
    assert f.trends["pcie_correctable"].delta_short >= 0
    assert any("restarted" in n for n in f.notes)


def test_latest_value_of_each_log_is_used():
    pts = [point(T0, {}, {"bad_user_nand_blocks_raw": 5000, "bad_user_nand_blocks_normalized": 10}),
           point(T0 + timedelta(minutes=1), HEALTHY_SMART, {})]
    a = score_history(pts)
    assert a.recommendation != "MONITOR"


def test_thresholds_from_yaml(tmp_path):
    f = tmp_path / "th.yaml"
    f.write_text("ssd:\n  ue_level_watch: 1000\n  risk_ue_low: 0.0\n")
    th = Thresholds.from_yaml(f)
    assert th.ue_level_watch == 1000
    assert score_snapshot({**HEALTHY_SMART, "media_errors": 25}, None, th).recommendation == "MONITOR"
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_threshold: 3\n")
    with pytest.raises(ValueError, match="no_such_threshold"):
        Thresholds.from_yaml(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        Thresholds.from_yaml(bad)


def test_combine_noisy_or():
    from redfleet.predict.scoring import Reason

    assert combine([]) == 0
    assert combine([Reason("a", "", 0.5, "g1"), Reason("b", "", 0.5, "g2")]) == pytest.approx(0.75)
    assert combine([Reason("a", "", 0.5, "g"), Reason("b", "", 0.4, "g")]) == pytest.approx(0.5)


def test_project_days():
    assert project_days(50, 10, -2) == 20
    assert project_days(50, 10, 1) is None and project_days(50, 10, 0) is None


def test_fleet_rank_and_budget():
    histories = {
        "a": [point(T0, {**HEALTHY_SMART, "critical_warning": 4}, {})],
        "b": [point(T0, {**HEALTHY_SMART, "avail_spare": 18}, {})],
        "c": [point(T0, HEALTHY_SMART, {})],
        "d": [point(T0, {**HEALTHY_SMART, "percent_used": 104}, {})],
        "e": [point(T0, {**HEALTHY_SMART, "critical_warning": 1}, {})],
    }
    info = {"a": {"node_id": "n1"}, "e": {"node_id": "n1"}, "b": {"node_id": "n2"}}
    ranked = score_fleet(histories, info=info)
    assert [a.drive_id for a in ranked][:2] == ["a", "e"] and ranked[-1].drive_id == "c"
    assert rank(reversed(ranked)) == ranked
    budget = replacement_budget(ranked, 2)
    assert [a.drive_id for a in budget.selected] == ["a", "e"]
    assert {a.drive_id for a in budget.deferred} == {"b", "d"}
    assert budget.counts == {"REPLACE": 2, "WATCH": 2, "MONITOR": 1}
    spread = replacement_budget(ranked, 2, one_per_node=True)
    assert [a.drive_id for a in spread.selected] == ["a", "b"]
    assert "e" in {a.drive_id for a in spread.deferred}
    only_replace = replacement_budget(ranked, 10, include_watch=False)
    assert [a.drive_id for a in only_replace.selected] == ["a", "e"]
    doc = budget.as_dict()
    assert doc["replace"][0]["rank"] == 1 and doc["replace"][0]["recommendation"] == "REPLACE"
    with pytest.raises(ValueError):
        replacement_budget(ranked, -1)
