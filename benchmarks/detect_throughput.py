"""Video frames consumed per second (decode included) by LightWeight's sampled detection versus YOLOv5's
stock `detect.run(vid_stride=k)` on the same video and weights, side by side in one process, interleaved,
best of N. The stock run is measured as `python detect.py` runs by default (annotated video written) and
with `nosave=True` (labels only).

Then peak RSS of the sampled detection on the video and on a 4x longer copy, each in a fresh process:
streaming means the second should stay within 10% of the first.

    .venv/bin/python benchmarks/detect_throughput.py --weights models/finetuned.pt \
        --video data/demo/videos/street_00.mp4 --interval 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from tasks.config import DetectConfig
from tasks.detect import detect_video, load_detector
from tasks.yolo.inference import stock_detect

_RSS_SCRIPT = """
import json, resource, sys
from pathlib import Path
from tasks.config import DetectConfig
from tasks.detect import detect_video, load_detector
cfg = DetectConfig.model_validate_json(sys.argv[1])
report = detect_video(load_detector(cfg, Path(cfg.weights)), cfg, Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "frames": report.frames_read}))
"""


def longer_copy(video: Path, times: int, out: Path) -> Path:
    """The video played `times` times in a row, re-encoded (mp4v)."""
    writer = None
    for _ in range(times):
        capture = cv2.VideoCapture(str(video))
        fps = capture.get(cv2.CAP_PROP_FPS) or 15
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            writer.write(frame)
        capture.release()
    assert writer is not None, f"{video}: no frames"
    writer.release()
    return out


def peak_rss(cfg: DetectConfig, video: Path, scratch: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, cfg.model_dump_json(), str(video), str(scratch / "rss.csv")],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("models/finetuned.pt"))
    parser.add_argument("--video", type=Path, default=Path("data/demo/videos/street_00.mp4"))
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = DetectConfig(
        weights=str(args.weights), videos=[str(args.video)], interval=args.interval, imgsz=args.imgsz, batch=args.batch
    )
    frames = int(cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FRAME_COUNT))
    detector = load_detector(cfg, args.weights)
    with tempfile.TemporaryDirectory(prefix="lightweight-bench-") as scratch_name:
        scratch = Path(scratch_name)
        runs = {
            "lightweight": lambda: detect_video(detector, cfg, args.video, scratch / "ours.csv"),
            "stock detect.py": lambda: stock_detect(
                args.weights, args.video, scratch / "stock", args.imgsz, cfg.conf, cfg.iou, args.interval, save=True
            ),
            "stock detect.py --nosave": lambda: stock_detect(
                args.weights,
                args.video,
                scratch / "stock-nosave",
                args.imgsz,
                cfg.conf,
                cfg.iou,
                args.interval,
                save=False,
            ),
        }
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, run in runs.items():  # interleaved, so machine noise hits every variant alike
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"{args.video} ({frames} frames), every {args.interval}th frame, imgsz {args.imgsz}, {args.weights}")
        print(f"{'variant':<26} {'best s':>8} {'frames/s':>9} {'vs stock':>9}")
        for name, seconds in best.items():
            print(f"{name:<26} {seconds:8.2f} {frames / seconds:9.1f} {best['stock detect.py'] / seconds:8.2f}x")
        print(f"lightweight vs stock --nosave: {best['stock detect.py --nosave'] / best['lightweight']:.2f}x")

        longer = longer_copy(args.video, 4, scratch / "longer.mp4")
        short_rss, long_rss = peak_rss(cfg, args.video, scratch), peak_rss(cfg, longer, scratch)
        print(
            f"peak RSS: {short_rss['frames']} frames {short_rss['peak_rss_mb']:.0f} MB, "
            f"{long_rss['frames']} frames {long_rss['peak_rss_mb']:.0f} MB "
            f"(+{100 * (long_rss['peak_rss_mb'] / short_rss['peak_rss_mb'] - 1):.1f}%)"
        )


if __name__ == "__main__":
    main()
