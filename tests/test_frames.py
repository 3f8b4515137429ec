"""Streaming sampled frames: the right indices, damaged frames skipped and counted, nothing held."""

from pathlib import Path

import pytest

from tasks.frames import ReadStats, VideoError, open_video, prefetched, sampled_frames, sampled_indices
from tests.videos import corrupt_jpeg_frames, frame_number, write_numbered_video


def _read(path: Path, interval: int, start: int = 0, end: int | None = None) -> tuple[list[tuple[int, int]], ReadStats]:
    """(index, number decoded from the frame) per sampled frame."""
    capture, info = open_video(path)
    stats = ReadStats()
    try:
        return [(i, frame_number(f)) for i, f in sampled_frames(capture, info, stats, interval, start, end)], stats
    finally:
        capture.release()


@pytest.mark.parametrize(
    ("interval", "start", "end"), [(1, 0, None), (5, 0, None), (5, 4, None), (3, 2, 20), (7, 0, 1)]
)
def test_every_interval_th_frame_between_start_and_end(tmp_path: Path, interval: int, start: int, end: int | None):
    video = write_numbered_video(tmp_path / "v.avi", 30)
    frames, stats = _read(video, interval, start, end)
    indices = [index for index, _ in frames]
    assert indices == [number for _, number in frames], "index and decoded frame disagree"
    assert indices == list(range(start, 30 if end is None else end, interval))
    assert indices == list(sampled_indices(30, interval, start, end))
    assert stats.decode_failures == 0


def test_frames_that_do_not_decode_are_skipped_counted_and_reading_goes_on(tmp_path: Path):
    video = corrupt_jpeg_frames(write_numbered_video(tmp_path / "v.avi", 30), [10, 11, 20])
    frames, stats = _read(video, 1)
    numbers = [number for _, number in frames]
    assert stats.decode_failures >= 2  # OpenCV's reader may also drop a good frame next to a damaged one
    assert numbers[:10] == list(range(10)), "frames before the damage are all there"
    assert numbers == sorted(set(numbers)) and not {10, 11, 20} & set(numbers), "damaged frames are skipped"
    assert {15, 25} <= set(numbers), "reading goes on after each damaged frame"
    assert stats.frames_read == 30


def test_a_video_with_zero_frames_gives_no_frames(tmp_path: Path):
    video = write_numbered_video(tmp_path / "empty.avi", 0)
    frames, stats = _read(video, 1)
    assert frames == [] and stats.frames_read == 0


@pytest.mark.parametrize("content", [None, b"", b"not a video at all"])
def test_missing_or_unreadable_videos_are_named(tmp_path: Path, content: bytes | None):
    video = tmp_path / "broken.mp4"
    if content is not None:
        video.write_bytes(content)
    with pytest.raises(VideoError, match=r"broken\.mp4: (video not found|cannot open video)"):
        open_video(video)


def test_prefetched_keeps_order_and_re_raises_reader_errors():
    assert list(prefetched(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(failing(), depth=2))


def test_prefetched_stops_its_reader_when_the_consumer_stops():
    produced = []

    def counting():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in prefetched(counting(), depth=2):
        if item == 3:
            break
    assert len(produced) < 10  # bounded read-ahead: the reader did not run to the end
