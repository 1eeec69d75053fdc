"""camtl: Conditionally Adaptive Multi-Task Learning (Pilault et al., ICLR 2021) on Hugging Face encoders."""

import os

__version__ = "0.2.0"

# OpenMP threads that wait by spinning hold their core; on a CPU that another process shares, a step then
# takes several times longer than the lost share explains (docs/precision-and-speed.md,
# results/diagnosis/contention.md).
# Waiting passively costs nothing measurable on a quiet machine. It must be set before torch loads its
# OpenMP runtime, which is why entry points import camtl first; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
