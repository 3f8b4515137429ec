"""Video frames consumed per second (decode included) by LightWeight's sampled detection versus YOLOv5's
stock `detect.run(vid_stride=k)` on the same video, weights and image size, side by side in one process,
interleaved, best of N. LightWeight runs as stage `detect` deploys it (`detect.runtime: auto`: the fastest
export of the weights that passed the equality check, see stage `export`) and on torch; the stock run as
`python detect.py` runs by default (annotated video written) and with `nosave=True` (labels only). The
deployed runtime's boxes are compared with torch's.

Then peak RSS (VmHWM) of the deployed sampled detection on the video and on a 4x longer copy, each in a
fresh process: streaming means the second should stay within 10% of the first.

    .venv/bin/python benchmarks/detect_throughput.py            # params.yaml's detect section, after `dvc repro`
    .venv/bin/python benchmarks/detect_throughput.py --imgsz 640 --runtime torch
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
from runtime_speed import compare_boxes  # this folder: the scripts run as `python benchmarks/<name>.py`

from tasks.config import DetectConfig, load_params
from tasks.detect import deployed_model, detect_video, load_detector
from tasks.yolo.inference import stock_detect

_RSS_SCRIPT = """
import json, re, sys
from pathlib import Path
from tasks.config import DetectConfig
from tasks.detect import deployed_model, detect_video, load_detector
cfg = DetectConfig.model_validate_json(sys.argv[1])
runtime, model = deployed_model(cfg, Path.cwd())
report = detect_video(load_detector(cfg, model, runtime), cfg, Path(sys.argv[2]), Path(sys.argv[3]))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report at least its parent's size.
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "frames": report.frames_read, "torch": "torch" in sys.modules}))
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
    parser.add_argument("--video", type=Path, default=Path("data/demo/videos/street_00.mp4"))
    parser.add_argument("--imgsz", type=int, help="default: params.yaml detect.imgsz")
    parser.add_argument(
        "--runtime", choices=["auto", "torch", "onnxruntime", "openvino"], help="default: detect.runtime"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    detect = load_params("params.yaml").detect
    overrides = {k: v for k, v in {"imgsz": args.imgsz, "runtime": args.runtime}.items() if v is not None}
    cfg = detect.model_copy(update={"videos": [str(args.video)], **overrides})
    weights = Path(cfg.weights)
    runtime, model = deployed_model(cfg, Path.cwd())
    frames = int(cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FRAME_COUNT))
    deployed = load_detector(cfg, model, runtime)
    on_torch = load_detector(cfg, weights)
    with tempfile.TemporaryDirectory(prefix="lightweight-bench-") as scratch_name:
        scratch = Path(scratch_name)
        ours = f"lightweight ({runtime})"
        runs = {
            ours: lambda: detect_video(deployed, cfg, args.video, scratch / "ours.csv"),
            "lightweight (torch)": lambda: detect_video(on_torch, cfg, args.video, scratch / "torch.csv"),
            "stock detect.py": lambda: stock_detect(
                weights, args.video, scratch / "stock", cfg.imgsz, cfg.conf, cfg.iou, cfg.interval, save=True
            ),
            "stock detect.py --nosave": lambda: stock_detect(
                weights, args.video, scratch / "stock-nosave", cfg.imgsz, cfg.conf, cfg.iou, cfg.interval, save=False
            ),
        }
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, run in runs.items():  # interleaved, so machine noise hits every variant alike
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        print(
            f"{args.video} ({frames} frames), every {cfg.interval}th frame, imgsz {cfg.imgsz}, batch {cfg.batch}, "
            f"{cfg.threads} threads, {weights} ({model} on {runtime}), best of {args.repeats}"
        )
        print(f"{'variant':<32} {'best s':>8} {'frames/s':>9} {'vs stock':>9}")
        for name, seconds in best.items():
            print(f"{name:<32} {seconds:8.2f} {frames / seconds:9.1f} {best['stock detect.py'] / seconds:8.2f}x")
        print(f"{ours} vs stock --nosave: {best['stock detect.py --nosave'] / best[ours]:.2f}x")
        print(f"{ours} boxes vs torch: {compare_boxes(scratch / 'ours.csv', scratch / 'torch.csv')}")

        longer = longer_copy(args.video, 4, scratch / "longer.mp4")
        short_rss, long_rss = peak_rss(cfg, args.video, scratch), peak_rss(cfg, longer, scratch)
        print(
            f"peak RSS ({runtime}): {short_rss['frames']} frames {short_rss['peak_rss_mb']:.0f} MB, "
            f"{long_rss['frames']} frames {long_rss['peak_rss_mb']:.0f} MB "
            f"(+{100 * (long_rss['peak_rss_mb'] / short_rss['peak_rss_mb'] - 1):.1f}%), "
            f"torch {'imported' if short_rss['torch'] else 'not imported'}"
        )


if __name__ == "__main__":
    main()
