"""glibc's allocator told to keep freed memory in the process: each step's large blocks reused, not re-faulted."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc mallopt() parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_malloc_tuned = False  # set by tune_malloc() once glibc took the settings


def tune_malloc(mmap_threshold: int = 1 << 30) -> bool:
    """Keep freed blocks in the process instead of handing them back to the OS after every step.

    By default glibc serves blocks over 32 MB-ish with mmap and unmaps them on free, so the logits of a
    50,257-token vocabulary and the activations are page-faulted in again every step, and the kernel's share of CPU
    time grows with them (BENCHMARKS.md). The numbers computed do not change; resident memory grows by what the
    step frees. Call before the first large allocation; glibc only (returns False elsewhere, e.g. macOS or musl).
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok = mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok  # int max: never trim the heap top
    global _malloc_tuned
    _malloc_tuned = _malloc_tuned or ok
    return ok


def malloc_keeps_freed_memory() -> bool:
    """True once tune_malloc() took effect in this process: memory freed on CPU stays mapped for reuse."""
    return _malloc_tuned
