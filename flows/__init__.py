"""Prefect flows, deployments and the `lightweight` command line.

Importing this package caps torch's CPU kernels at AVX2 (flows/kernels.py): the cap only takes effect when set
before torch loads, and every entry point comes through here first (`lightweight` and its DVC stages, `lightweight
serve`, a Prefect worker loading `flows.pipeline`), so each computes the same bits on every x86-64 CPU.
"""

from flows.kernels import pin_cpu_kernels

pin_cpu_kernels()
