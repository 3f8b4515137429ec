"""torch's CPU kernels are capped at AVX2 before torch loads, so every x86-64 CPU computes the same bits."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.kernels import AVX2_KERNELS, pin_cpu_kernels
from tests.conftest import REPO

FLAGS = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
needs_avx2 = pytest.mark.skipif("avx2" not in FLAGS, reason="the caps apply to x86-64 CPUs with AVX2")


def _python(code: str, **environ: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose environment has none of the caps, plus `environ`."""
    env = {k: v for k, v in os.environ.items() if k not in AVX2_KERNELS} | environ
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)


def test_pinning_fills_in_the_caps_and_keeps_values_already_set():
    environ = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PATH": "/bin"}
    in_force = pin_cpu_kernels(environ)
    assert in_force == {**AVX2_KERNELS, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert environ == {**in_force, "PATH": "/bin"}


@needs_avx2
def test_importing_flows_before_torch_runs_torch_on_avx2_kernels():
    done = _python("import flows, torch; print(torch.backends.cpu.get_cpu_capability())")
    assert done.stdout.split() == ["AVX2"]
    assert "imported before" not in done.stderr


@needs_avx2
def test_a_capability_set_by_the_user_wins():
    done = _python("import flows, torch; print(torch.backends.cpu.get_cpu_capability())", ATEN_CPU_CAPABILITY="default")
    assert done.stdout.split() == ["DEFAULT"]


def test_torch_loaded_before_the_caps_is_reported_by_name():
    done = _python("import torch, flows")
    assert "torch was imported before the CPU kernels were capped" in done.stderr
    assert all(name in done.stderr for name in AVX2_KERNELS)


CONVOLUTION = (
    "import hashlib, torch\n"
    "torch.manual_seed(0)\n"
    "x, conv = torch.randn(2, 16, 64, 64), torch.nn.Conv2d(16, 32, 3, padding=1)\n"
    "with torch.no_grad():\n"
    "    print(hashlib.sha256(conv(x).numpy().tobytes()).hexdigest())\n"
)


@pytest.mark.skipif("avx512f" not in FLAGS, reason="shows what the caps prevent on an AVX-512 CPU")
def test_on_an_avx512_cpu_its_own_kernels_would_give_other_bits():
    capped = _python("import flows\n" + CONVOLUTION)
    native = _python(CONVOLUTION)
    assert capped.stdout != native.stdout
    assert _python("import flows\n" + CONVOLUTION).stdout == capped.stdout
