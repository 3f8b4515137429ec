"""Nightly comparison: which changes alert, which baseline is used, and the history on disk."""

import csv
import json
from pathlib import Path

import pytest

from tasks.config import ConfigError, DetectConfig, NightlyConfig, TrackConfig, load_params
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.nightly import (
    Evaluation,
    NightlyError,
    compare_evaluations,
    count_shift,
    judge_and_record,
    load_history,
    unique_people,
)

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


def test_unique_people_shift_alerts_per_video_like_people_per_frame():
    previous = Evaluation(map50=0.9, unique_people={"street": 24, "square": 10, "park": 3})
    current = Evaluation(map50=0.9, unique_people={"street": 30, "square": 13, "park": 3, "new": 5})  # +25%, +30%
    alerts = compare_evaluations(previous, current, CFG)
    assert [(a.metric, a.previous, a.current, a.change) for a in alerts] == [("unique_people/square", 10, 13, 0.3)]
    assert "unique_people/square moved from 10 to 13 (shift 30% > nightly.max_count_shift 25%)" in alerts[0].message


def test_a_history_from_before_unique_people_still_loads_and_is_compared_from_tonight(tmp_path: Path):
    history = tmp_path / "history.json"
    old = {"map50": 0.9, "people_per_frame": {"a": 2.0}, "map50_95": 0.5, "model_sha256": "", "evaluated_at": ""}
    history.write_text(json.dumps([old | {"passed": True}]))
    tonight = Evaluation(map50=0.9, people_per_frame={"a": 2.0}, unique_people={"a": 20})
    verdict = judge_and_record(history, tonight, CFG)
    assert verdict.passed and verdict.previous.unique_people == {}
    assert load_history(history)[-1].unique_people == {"a": 20}
    assert judge_and_record(history, Evaluation(map50=0.9, unique_people={"a": 40}), CFG).alerts  # now it compares


def test_unique_people_are_counted_by_the_track_stage_s_tracker(tmp_path: Path):
    detect = DetectConfig(interval=5)
    sampled = range(0, 60, detect.interval)
    rows = [(f, round(f / 15, 4), 20 + 3 * f, 100, 60 + 3 * f, 200, 0.9, 0) for f in sampled]  # walks right
    rows += [(f, round(f / 15, 4), 560 - 3 * f, 150, 600 - 3 * f, 260, 0.8, 0) for f in sampled]  # walks left
    reports = []
    for name, video_rows in (("two", sorted(rows)), ("empty", [])):
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([DETECTION_COLUMNS, *video_rows])
        reports.append(
            VideoReport(f"{name}.mp4", name, "ok", frames=60, fps=15, width=640, height=360, frames_read=60, sampled=12)
        )
    reports.append(VideoReport("bad.mp4", "bad", "failed", error="cannot open"))
    write_summary(tmp_path, reports)
    assert unique_people(TrackConfig(), detect, tmp_path) == {"two": 2, "empty": 0}
