"""Host memory: keep what a training step frees for the next step instead of returning it to the OS.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB, e.g. the 47 MB gradient of
BERT's word embeddings) with a fresh ``mmap`` and unmaps it when freed, and trims the heap's free top
back to the OS; the next step then faults in and zeroes the same pages again. On the CPU that is a
measurable part of a step, and it varies with the order of earlier allocations, so it also blurs
comparisons between models (docs/benchmarks.md, speed). ``retain_freed_memory`` turns both off with
``mallopt``, as PyTorch's CPU launcher (``torch.backends.xeon.run_cpu``) does for jemalloc with its
decay settings: the process keeps its peak heap until it exits, and steps reuse it.

Entry points call it (run.py, the benchmark programs); importing camtl changes nothing. It does nothing
where malloc is not glibc's, where the environment configures malloc itself (``MALLOC_*``,
``GLIBC_TUNABLES``, an ``LD_PRELOAD``-ed allocator), or where ``CAMTL_RETAIN_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest one, 2 GiB of free heap top kept
OPT_OUT = "CAMTL_RETAIN_FREED_MEMORY"


def environment_configures_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """The user set glibc's malloc options, or preloaded another allocator: theirs wins."""
    return any(name.startswith("MALLOC_") for name in environ) or any(
        environ.get(name) for name in ("GLIBC_TUNABLES", "LD_PRELOAD")
    )


def retain_freed_memory() -> bool:
    """Stop glibc from unmapping large blocks and trimming the heap; True when it took effect."""
    if os.environ.get(OPT_OUT, "1") == "0" or environment_configures_malloc():
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success: no mmap-served blocks from now on, and no trimming.
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
