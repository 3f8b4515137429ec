"""torch's CPU kernels capped at AVX2, so that training and inference compute the same bits on every x86-64 CPU.

torch picks its kernels by the instruction set of the CPU it runs on: ATen's own vectorised kernels, oneDNN's
convolutions and MKL's matrix products. AVX-512 kernels add up in another order than AVX2 ones, and the results
drift apart over an epoch: from the same data and seed, the demo's base detector came out at val mAP50 0.827 on an
AVX-512 machine and at 0.855 on an AVX2 one. Capped at AVX2, the AVX-512 machine wrote the AVX2 machine's
models/base.pt and models/classifier.pt byte for byte. Each library reads its variable once, when it first runs,
so the caps go into the environment before torch is imported (flows/__init__.py); a value already set wins.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

__all__ = ["AVX2_KERNELS", "pin_cpu_kernels"]

log = logging.getLogger(__name__)

AVX2_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels (reductions, activations, depthwise convolutions)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's convolutions
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's matrix products (MKL_CBWR=AVX2 did not hold on an AMD CPU)
}


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Cap torch's CPU kernels at AVX2 in `environ`, keeping values already set; return the settings in force."""
    missing = [name for name in AVX2_KERNELS if name not in environ]
    if missing and environ is os.environ and "torch" in sys.modules:
        log.warning(
            "torch was imported before the CPU kernels were capped (%s unset): results may differ between CPUs; "
            "set them before starting Python, or import flows first",
            ", ".join(missing),
        )
    for name, value in AVX2_KERNELS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in AVX2_KERNELS}
