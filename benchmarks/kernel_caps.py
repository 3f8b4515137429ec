"""What capping torch's CPU kernels at AVX2 (flows/kernels.py) costs on a CPU with AVX-512: a training step
of models/base.pt (batch 16 at 192 px, forward + backward + SGD, as stage base trains) and a batch-1
inference of a 640 x 384 frame, each timed as min over N in a child process with the caps and one without
them (the caps are read once per process, so the two cannot share one), interleaved round by round.

    .venv/bin/python benchmarks/kernel_caps.py --rounds 3   # after `dvc repro` (models/base.pt)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from flows.kernels import AVX2_KERNELS

_CHILD = """
import json, sys, torch
from tasks.timing import min_call_times
from tasks.yolo import detection_model, load_checkpoint
repeats = int(sys.argv[1])
torch.set_num_threads(2)
torch.manual_seed(0)
model = detection_model(load_checkpoint("models/base.pt")).float().train()
for parameter in model.parameters():
    parameter.requires_grad_(True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
images = torch.rand(16, 3, 192, 192)
def step():
    optimizer.zero_grad()
    sum(p.sum() for p in model(images)).backward()
    optimizer.step()
train = min_call_times({"step": step}, repeats, warmup=1)["step"]
model.eval()
frame = torch.rand(1, 3, 384, 640)
with torch.no_grad():
    infer = min_call_times({"infer": lambda: model(frame)}, repeats, warmup=1)["infer"]
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "train_step_s": train, "infer_s": infer}))
"""


def _child(capped: bool, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in AVX2_KERNELS}
    if capped:
        env |= AVX2_KERNELS
    done = subprocess.run([sys.executable, "-c", _CHILD, str(repeats)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="child processes of each kind, interleaved")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs in each child (min is kept)")
    args = parser.parse_args()
    results: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.rounds):
        for capped in (False, True):
            results[capped].append(_child(capped, args.repeats))
    for key in ("train_step_s", "infer_s"):
        native = min(r[key] for r in results[False])
        capped = min(r[key] for r in results[True])
        print(
            f"{key}: native {results[False][0]['capability']} {native * 1000:.1f} ms, "
            f"capped {results[True][0]['capability']} {capped * 1000:.1f} ms, capped/native {capped / native:.2f}"
        )


if __name__ == "__main__":
    main()
