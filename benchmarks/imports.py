"""Start-up cost of a stage process: seconds to import the YOLOv5 adapter, with and without its quick
`inspect.stack` (tasks/yolo/allowlist.py), each in a fresh interpreter, interleaved, best of N.

Every `lightweight run STAGE` that touches a checkpoint pays this once; `dvc repro` runs about ten such
processes, and the DVC and interrupt tests many more.

    .venv/bin/python benchmarks/imports.py --repeats 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys

_IMPORT = """
import time, warnings
start = time.perf_counter()
{setup}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import yolov5.models.yolo
print(time.perf_counter() - start)
"""
_VARIANTS = {
    "stock inspect.stack": "",
    "quick inspect.stack": "import tasks.yolo.allowlist  # imports yolov5 under _quick_stack",
}


def _seconds(setup: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT.format(setup=setup)], check=True, capture_output=True, text=True
    ).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    best = dict.fromkeys(_VARIANTS, float("inf"))
    for _ in range(args.repeats):
        for name, setup in _VARIANTS.items():
            best[name] = min(best[name], _seconds(setup))
    for name, seconds in best.items():
        print(f"{name}: import yolov5 in {seconds:.2f} s (best of {args.repeats})")
    saved = best["stock inspect.stack"] - best["quick inspect.stack"]
    print(f"saved per process: {saved:.2f} s ({best['quick inspect.stack'] / best['stock inspect.stack']:.2f}x)")


if __name__ == "__main__":
    main()
