"""CPU latency of YOLOv5 checkpoints on PyTorch, ONNX Runtime and OpenVINO, side by side in one process.

Every checkpoint is exported as stage `export` does it (ExportConfig's defaults: dynamic ONNX, FP32 IR converted
from it), then timed at batch 1 and `--imgsz` px on each runtime at each thread count: the same input for all,
interleaved rounds so machine noise hits every variant alike, best of `--repeats`. Speed-ups are against the
first checkpoint on PyTorch (what a user runs today) and against the first checkpoint on the same runtime
(the pruning's own gain there).

Then sampled detection on a video (stage `detect`'s loop, batches of `--batch` frames) with the last checkpoint
on each runtime, with two threads in one session or two one-thread sessions on halves of each batch, against
YOLOv5's stock `detect.py --vid-stride K` on the same .pt; the boxes of each runtime against torch's; and
the peak RSS of each in a fresh process.

With `--int8 DIR` (stage export's models/int8/, written with export.int8: true), each checkpoint's INT8 model
DIR/<stem>.onnx, where there is one, is timed too as runtime onnxruntime_int8 (its boxes only approximate torch's).

    .venv/bin/python benchmarks/runtime_speed.py models/base.pt models/pruned.pt models/finetuned.pt \\
        --video data/demo/videos/street_00.mp4 --interval 5 [--int8 models/int8]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from tasks.config import DetectConfig
from tasks.detect import detect_video, load_detector
from tasks.export import ExportConfig
from tasks.runtimes import ExportedDetector
from tasks.yolo.inference import stock_detect
from tasks.yolo.latency import ALL_RUNTIMES as RUNTIMES
from tasks.yolo.latency import latency_matrix, runtime_files

_RSS_SCRIPT = """
import json, re, sys
from pathlib import Path
from tasks.config import DetectConfig
from tasks.detect import detect_video, load_detector
from tasks.runtimes import ExportedDetector
cfg, spec = DetectConfig.model_validate_json(sys.argv[1]), json.loads(sys.argv[2])
if spec["runtime"] == "torch":  # only this one imports torch (and yolov5), as in stage detect
    detector = load_detector(cfg.model_copy(update={"threads": spec["threads"]}), Path(cfg.weights))
else:
    detector = ExportedDetector(Path(spec["model"]), spec["runtime"], cfg.imgsz, cfg.conf, cfg.iou, cfg.max_det,
                                threads=spec["threads"], split=spec["split"])
report = detect_video(detector, cfg, Path(sys.argv[3]), Path(sys.argv[4]))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report at least its parent's size.
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "frames": report.frames_read, "torch": "torch" in sys.modules}))
"""


def export_all(checkpoints: list[Path], out: Path, imgsz: int, int8_dir: Path | None) -> dict[str, dict[str, Path]]:
    """Each checkpoint as the export stage writes it: {name: {runtime: file}} ("torch": the .pt itself)."""
    cfg = ExportConfig(imgsz=imgsz)
    names = [
        w.stem if [c.stem for c in checkpoints].count(w.stem) == 1 else f"{w.stem}_{i}"
        for i, w in enumerate(checkpoints)
    ]
    int8 = {}
    if int8_dir is not None:
        int8 = {n: f for n, w in zip(names, checkpoints, strict=True) if (f := int8_dir / f"{w.stem}.onnx").is_file()}
        print(f"INT8 models from {int8_dir}: {', '.join(map(str, int8.values())) or 'none'}")
    return runtime_files(
        dict(zip(names, checkpoints, strict=True)),
        RUNTIMES,
        out,
        imgsz=imgsz,
        opset=cfg.opset,
        dynamic=cfg.dynamic,
        simplify=cfg.simplify,
        int8=int8,
    )


def print_matrix(matrix: dict, exported: dict, imgsz: int, repeats: int) -> None:
    base = next(iter(exported))
    print(f"\nlatency, batch 1, {imgsz} px, best of {repeats} interleaved rounds")
    header = "".join(f" | {t} thr: ms   vs {base}·torch  vs {base}·same" for t in matrix)
    print(f"{'model · runtime':<28}{header}")
    for name in exported:
        for runtime in RUNTIMES:
            if runtime not in exported[name]:  # an INT8 model only where export made and kept one
                continue
            cells = []
            for seconds in matrix.values():
                own = seconds[name, runtime]
                same = f"{seconds[base, runtime] / own:12.2f}x" if (base, runtime) in seconds else f"{'—':>13}"
                cells.append(f" | {own * 1e3:9.1f} {seconds[base, 'torch'] / own:11.2f}x {same}")
            print(f"{name + ' · ' + runtime:<28}{''.join(cells)}")


def _boxes(csv_file: Path) -> dict[int, list[tuple[float, ...]]]:
    rows: dict[int, list[tuple[float, ...]]] = {}
    with csv_file.open() as handle:
        for row in csv.DictReader(handle):
            box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2", "conf"))
            rows.setdefault(int(row["frame"]), []).append(box)
    return rows


def compare_boxes(mine: Path, reference: Path) -> str:
    """'same' when every frame has as many boxes, each within 1 px of one of the reference's; else how not."""
    ours, theirs = _boxes(mine), _boxes(reference)
    if {f: len(b) for f, b in ours.items()} != {f: len(b) for f, b in theirs.items()}:
        return "different counts"
    worst = 0.0
    for frame, boxes in theirs.items():
        for box in boxes:
            worst = max(worst, min(max(abs(a - b) for a, b in zip(box[:4], o[:4], strict=True)) for o in ours[frame]))
    return "same" if worst <= 1.0 else f"off by {worst:.0f} px"


def detection_variants(cfg: DetectConfig, files: dict[str, Path]) -> dict[str, tuple[dict, object]]:
    """{label: (spec for the RSS subprocess, detector)} for every runtime and thread layout."""
    weights = files["torch"]
    variants: dict[str, tuple[dict, object]] = {}
    torch.set_num_threads(2)
    variants["torch, 2 threads"] = ({"runtime": "torch", "threads": 2}, load_detector(cfg, weights))
    for runtime in [r for r in RUNTIMES[1:] if r in files]:
        for split in (False, True):
            spec = {"runtime": runtime, "model": str(files[runtime]), "threads": 2, "split": split}
            label = f"{runtime}, " + ("2 x 1-thread sessions" if split else "2 threads")
            detector = ExportedDetector(
                files[runtime], runtime, cfg.imgsz, cfg.conf, cfg.iou, cfg.max_det, threads=2, split=split
            )
            variants[label] = (spec, detector)
    return variants


def peak_rss(cfg: DetectConfig, spec: dict, video: Path, scratch: Path) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS_SCRIPT,
            cfg.model_dump_json(),
            json.dumps(spec),
            str(video),
            str(scratch / "rss.csv"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def video_throughput(files: dict[str, Path], args: argparse.Namespace, scratch: Path) -> None:
    weights, video = files["torch"], args.video
    cfg = DetectConfig(
        weights=str(weights), videos=[str(video)], interval=args.interval, imgsz=args.imgsz, batch=args.batch
    )
    frames = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    variants = detection_variants(cfg, files)
    runs: dict[str, Callable[[], object]] = {
        label: (lambda d=detector, label=label: detect_video(d, cfg, video, scratch / f"{label}.csv"))
        for label, (_, detector) in variants.items()
    }
    runs[f"stock detect.py --vid-stride {args.interval}"] = lambda: stock_detect(
        weights, video, scratch / "stock", args.imgsz, cfg.conf, cfg.iou, args.interval, save=True
    )
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.video_repeats):
        for label, run in runs.items():  # interleaved, as the latencies
            start = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - start)
    stock = best[f"stock detect.py --vid-stride {args.interval}"]
    print(
        f"\nsampled detection: {video} ({frames} frames), every {args.interval}th frame, {args.imgsz} px, "
        f"batch {args.batch}, {weights}, best of {args.video_repeats}"
    )
    print(f"{'variant':<42} {'frames/s':>9} {'vs stock':>9} {'peak RSS MB':>12}  boxes vs torch")
    for label, seconds in best.items():
        spec = variants[label][0] if label in variants else None
        rss = f"{peak_rss(cfg, spec, video, scratch):12.0f}" if spec else f"{'':>12}"
        same = compare_boxes(scratch / f"{label}.csv", scratch / "torch, 2 threads.csv") if spec else ""
        print(f"{label:<42} {frames / seconds:9.1f} {stock / seconds:8.2f}x {rss}  {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "checkpoints",
        nargs="*",
        type=Path,
        default=[Path("models/base.pt"), Path("models/pruned.pt"), Path("models/finetuned.pt")],
    )
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--video", type=Path, default=Path("data/demo/videos/street_00.mp4"))
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--video-repeats", type=int, default=3)
    parser.add_argument("--int8", type=Path, default=None, help="folder of INT8 models <stem>.onnx (models/int8)")
    args = parser.parse_args()
    if args.repeats < 1 or args.video_repeats < 1:
        parser.error("--repeats and --video-repeats must be at least 1 (each figure is a best of N)")
    missing = [str(p) for p in args.checkpoints if not p.is_file()]
    if missing:
        parser.error(f"checkpoints not found: {', '.join(missing)} (run the pipeline, or name others)")
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="lightweight-runtimes-") as scratch_name:
        scratch = Path(scratch_name)
        exported = export_all(args.checkpoints, scratch, args.imgsz, args.int8)
        matrix = latency_matrix(exported, imgsz=args.imgsz, threads=threads, repeats=args.repeats)
        print_matrix(matrix, exported, args.imgsz, args.repeats)
        if args.video.is_file():
            video_throughput(exported[list(exported)[-1]], args, scratch)
        else:
            print(f"\n{args.video}: not found, no video throughput measured")


if __name__ == "__main__":
    main()
