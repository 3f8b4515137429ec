"""Nightly comparison: which changes alert, which baseline is used, and the history on disk."""

import json
from pathlib import Path

import pytest

from tasks.config import ConfigError, NightlyConfig, load_params
from tasks.nightly import Evaluation, NightlyError, compare_evaluations, count_shift, judge_and_record, load_history

CFG = NightlyConfig(max_map50_drop=0.02, max_count_shift=0.25)


def night(map50: float, **people: float) -> Evaluation:
    return Evaluation(map50=map50, people_per_frame=people)


def test_first_run_has_nothing_to_compare_with():
    assert compare_evaluations(None, night(0.1, a=9.0), CFG) == []


def test_map50_drop_beyond_the_tolerance_alerts_and_at_it_does_not():
    assert compare_evaluations(night(0.90), night(0.88), CFG) == []  # exactly 0.02: allowed
    assert compare_evaluations(night(0.90), night(0.95), CFG) == []  # a gain is never an alert
    [alert] = compare_evaluations(night(0.90), night(0.85), CFG)
    assert (alert.metric, alert.previous, alert.current, alert.change) == ("map50", 0.90, 0.85, 0.05)
    assert "0.9000 to 0.8500" in alert.message and "nightly.max_map50_drop 0.02" in alert.message


def test_people_count_shift_in_either_direction_alerts_per_video():
    previous = night(0.9, street=4.0, square=2.0, park=3.0)
    current = night(0.9, street=5.0, square=1.0, park=3.5)  # +25% (allowed), -50%, +16.7%
    alerts = compare_evaluations(previous, current, CFG)
    assert [(a.metric, a.change) for a in alerts] == [("people_per_frame/square", 0.5)]
    assert "from 2.00 to 1.00" in alerts[0].message


def test_counts_below_one_person_per_frame_shift_absolutely():
    assert count_shift(0.1, 0.3) == pytest.approx(0.2)
    assert count_shift(4.0, 2.0) == 0.5
    assert compare_evaluations(night(0.9, empty=0.0), night(0.9, empty=0.2), CFG) == []
    assert len(compare_evaluations(night(0.9, empty=0.0), night(0.9, empty=0.5), CFG)) == 1


def test_videos_seen_only_one_night_are_not_compared():
    assert compare_evaluations(night(0.9, old=5.0), night(0.9, new=1.0), CFG) == []


def test_history_keeps_comparing_with_the_last_passing_night(tmp_path: Path):
    history = tmp_path / "nightly" / "history.json"
    assert judge_and_record(history, night(0.90), CFG).alerts == []  # first night: baseline
    bad = judge_and_record(history, night(0.80), CFG)
    assert [a.metric for a in bad.alerts] == ["map50"] and not bad.current.passed
    still_bad = judge_and_record(history, night(0.81), CFG)  # against 0.90, not against the failed 0.80
    assert still_bad.previous.map50 == 0.90 and still_bad.alerts
    recovered = judge_and_record(history, night(0.89), CFG)
    assert recovered.passed and recovered.previous.map50 == 0.90
    assert [(e.map50, e.passed) for e in load_history(history)] == [
        (0.90, True),
        (0.80, False),
        (0.81, False),
        (0.89, True),
    ]
    assert json.loads(history.read_text())[0]["map50"] == 0.90


def test_unreadable_history_is_named(tmp_path: Path):
    history = tmp_path / "history.json"
    history.write_text("{not json")
    with pytest.raises(NightlyError, match=r"history.json: not a nightly history"):
        judge_and_record(history, night(0.9), CFG)


def test_nightly_params_are_checked(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("nightly: {cron: '0 2 * *', timezone: Mars/Olympus, max_map50_drop: -1}\n")
    with pytest.raises(ConfigError) as error:
        load_params(path)
    message = str(error.value)
    assert "nightly.cron: expected five cron fields" in message
    assert "nightly.timezone: unknown timezone 'Mars/Olympus'" in message
    assert "nightly.max_map50_drop: Input should be greater than or equal to 0" in message
