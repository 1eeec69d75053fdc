"""Numeric precision: what the hardware computes natively, which precision a run uses, and its autocast.

bf16 autocast only pays where the processor multiplies bf16 natively: on x86 the AVX512_BF16 or AMX_BF16
instructions, on Arm BF16 or SVE-BF16. Elsewhere oneDNN converts to fp32 and back around every product,
and a bf16 step is slower than fp32. Having the instructions is not enough either: with AVX512_BF16 and
no AMX a bf16 GEMM ran at half the fp32 rate on an Intel Xeon and over twice it on an AMD EPYC
(results/precision/). So ``auto`` asks the CPU's flags first
and then a short GEMM at the run's thread count, and picks bf16 only where it is native *and* measured
faster. The measurement is made once per machine and kept (``speedup_cache_file()``), so every run there
chooses alike.

Heads, losses and entropies stay in fp32 under every precision (``camtl.model.heads``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from camtl.data.features import default_cache_dir
from camtl.errors import UsageError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Capability names of torch.cpu.get_capabilities() that mean bf16 dot products in hardware.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
# auto picks bf16 only when its GEMM is at least this much faster: a tie is not worth the rounding.
BF16_MIN_SPEEDUP = 1.15
PROBE_SIZE = 1024  # a GEMM of the size of a 6 x 384 encoder's feed-forward on a batch of 32 x 32


@dataclass(frozen=True)
class CpuReport:
    """What the CPU reports: its model name and which of the native-bf16 flags it has."""

    name: str
    bf16_flags: tuple[str, ...]

    @property
    def native_bf16(self) -> bool:
        return bool(self.bf16_flags)

    @classmethod
    def of(cls, capabilities: Mapping[str, object], name: str) -> CpuReport:
        return cls(name, tuple(flag for flag in NATIVE_BF16_FLAGS if capabilities.get(flag) is True))


def cpu_name() -> str:
    """The CPU's model name as ``lscpu`` shows it (Linux), else what Python or PyTorch know."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or str(torch.cpu.get_capabilities().get("cpu_name", "unknown CPU"))


@functools.cache
def this_cpu() -> CpuReport:
    return CpuReport.of(torch.cpu.get_capabilities(), cpu_name())


def gemm_rate(dtype: torch.dtype, size: int = PROBE_SIZE, seconds: float = 0.05) -> float:
    """FLOP/s of a ``size`` x ``size`` matmul in ``dtype`` at the current thread count (the median of
    repeats filling about ``seconds`` after one warm-up product)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: oneDNN builds its kernel on the first call
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 50):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def measure_bf16_speedup(size: int = PROBE_SIZE, repeats: int = 12) -> float:
    """bf16 / fp32 GEMM rate at the current thread count: the fastest of interleaved repeats of each, so
    that another process slowing some repeats (a shared machine) slows both precisions' alike, and rarely
    all of them."""
    matrices = {dtype: torch.randn(size, size, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)}
    fastest = {}
    for dtype, matrix in matrices.items():
        matrix @ matrix  # warm-up: oneDNN builds its kernel on the first call
        fastest[dtype] = float("inf")
    for _ in range(repeats):
        for dtype, matrix in matrices.items():
            start = time.perf_counter()
            matrix @ matrix
            fastest[dtype] = min(fastest[dtype], time.perf_counter() - start)
    return fastest[torch.float32] / fastest[torch.bfloat16]


def speedup_cache_file() -> Path:
    return default_cache_dir().parent / "precision.json"


def _bf16_speedup(cpu: CpuReport) -> float:
    """The bf16 / fp32 GEMM rate of this CPU at the current thread count, measured once per machine (CPU,
    flags, torch, threads) and kept in ``speedup_cache_file()``: every run on a machine makes the same
    choice. Delete the file to measure again."""
    threads = torch.get_num_threads()
    key = f"{cpu.name} | {' '.join(cpu.bf16_flags)} | torch {torch.__version__} | {threads} threads"
    path = speedup_cache_file()
    try:
        cached = json.loads(path.read_text())
        if not isinstance(cached, dict):
            cached = {}
    except (OSError, ValueError):
        cached = {}  # none yet, or unreadable: measure and write it anew
    if isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    cached[key] = measure_bf16_speedup()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(cached, indent=2))
        os.replace(temp, path)
    except OSError:
        logger.warning("could not keep the bf16 measurement in %s: it is made again next run", path)
    return cached[key]


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why, as recorded in its settings."""

    precision: str  # fp32, bf16 or fp16
    requested: str
    device: str
    hardware: str  # the CPU's or GPU's name
    native_bf16: bool
    bf16_speedup: float | None  # measured bf16 / fp32 GEMM rate, where it was measured
    reason: str

    def record(self) -> dict:
        """The choice and the machine, with the thread count the run computes with."""
        return {**dataclasses.asdict(self), "threads": torch.get_num_threads()}


def choose_precision(
    requested: str,
    device: str,
    cpu: CpuReport | None = None,
    speedup: float | None = None,
) -> PrecisionChoice:
    """Resolve ``--precision`` (``auto``, ``fp32``, ``bf16`` or ``fp16``) for ``device`` ("cpu", "cuda", ...).

    ``cpu`` and ``speedup`` (bf16 / fp32 GEMM rate) are what this machine reports and measures unless given,
    which is how tests try both answers. A bf16 request on a CPU without native bf16 and an fp16 request
    off CUDA are refused (UsageError).
    """
    if requested not in PRECISIONS:
        raise UsageError(f"--precision {requested} is not one of {', '.join(PRECISIONS)}")
    if device == "cuda":
        return _choose_on_cuda(requested)
    if requested == "fp16":
        raise UsageError(
            "--fp16 needs a CUDA GPU: on the CPU use --precision auto (bf16 where it pays) or fp32"
        )
    if device != "cpu":  # MPS, XLA: the user's explicit choice, fp32 otherwise
        precision = "fp32" if requested == "auto" else requested
        return PrecisionChoice(precision, requested, device, device, False, None, f"{requested} on {device}")
    cpu = cpu or this_cpu()
    if requested == "fp32" or (requested == "auto" and not cpu.native_bf16):
        reason = "asked for" if requested == "fp32" else "this CPU has no native bf16"
        return PrecisionChoice("fp32", requested, device, cpu.name, cpu.native_bf16, None, reason)
    if not cpu.native_bf16:
        raise UsageError(
            f"--precision bf16: this CPU ({cpu.name}) has no native bf16 (none of"
            f" {', '.join(NATIVE_BF16_FLAGS[:2])} in what PyTorch reports), so bf16 would be emulated and"
            " slower than fp32 (results/precision/): use --precision fp32 or auto"
        )
    speedup = _bf16_speedup(cpu) if speedup is None else speedup
    faster = speedup >= BF16_MIN_SPEEDUP
    threads = torch.get_num_threads()
    measured = f"bf16 GEMM {speedup:.2f}x fp32 at {threads} thread{'s' * (threads > 1)}"
    if requested == "bf16":
        if not faster:
            logger.warning("--precision bf16 on %s: %s, so auto would choose fp32", cpu.name, measured)
        return PrecisionChoice("bf16", requested, device, cpu.name, True, speedup, f"asked for; {measured}")
    precision = "bf16" if faster else "fp32"
    return PrecisionChoice(precision, requested, device, cpu.name, True, speedup, f"native bf16, {measured}")


def _choose_on_cuda(requested: str) -> PrecisionChoice:
    name = torch.cuda.get_device_name()
    bf16 = torch.cuda.is_bf16_supported()
    if requested == "bf16" and not bf16:
        raise UsageError(f"--precision bf16: {name} has no bf16: use --precision fp16, fp32 or auto")
    precision = ("bf16" if bf16 else "fp32") if requested == "auto" else requested
    reason = "asked for" if requested != "auto" else ("the GPU has bf16" if bf16 else "the GPU has no bf16")
    return PrecisionChoice(precision, requested, "cuda", name, bf16, None, reason)


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast of ``precision`` on ``device_type``: none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=DTYPES[precision])


def mixed_precision(args, device: torch.device) -> contextlib.AbstractContextManager:
    """The training step's autocast for forwards outside it (MT-U scoring, evaluation, prediction): the
    Trainer's own context manager is a no-op there in transformers 5. ``--precision`` has set ``bf16`` or
    ``fp16`` (camtl.training.arguments), so plain TrainingArguments work too."""
    return autocast("bf16" if args.bf16 else "fp16" if args.fp16 else "fp32", device.type)
