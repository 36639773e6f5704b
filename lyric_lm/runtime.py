"""Process-wide speed settings: the memory allocator, matmul precision, and the precision CPUs support."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform
from pathlib import Path

from omegaconf import OmegaConf

from lyric_lm.run_dir import job_label, new_dir

log = logging.getLogger(__name__)

# glibc mallopt() parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_malloc_tuned = False  # set by tune_malloc() once glibc took the settings


def tune_malloc(mmap_threshold: int = 1 << 30) -> bool:
    """Keep freed blocks in the process instead of handing them back to the OS after every step.

    By default glibc serves blocks over 32 MB-ish with mmap and unmaps them on free, so the logits of a
    50,257-token vocabulary and the activations are page-faulted in again every step: 20-45% of CPU time
    went to the kernel in our profiles, and tuned thresholds gave +35% tokens/s (GPT-2 124M, bf16) with
    bit-identical losses, for some resident memory. Call before the first large allocation; glibc only
    (returns False elsewhere, e.g. macOS or musl).
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


@functools.cache
def cpu_supports_bf16() -> bool:
    """True if the CPU has native bf16 matmuls (x86 AVX512-BF16 or AMX, Arm BF16): autocast then pays."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def auto_precision(accelerator: str = "auto") -> str:
    """`bf16-mixed` where the device computes bf16 natively (recent NVIDIA GPUs, CPUs per above), else `32-true`."""
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator == "gpu":
        return "bf16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def auto_accelerator() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _resolve(name: str, *args):
    if name == "auto_precision":  # ${lyric:auto_precision} or ${lyric:auto_precision,cpu}
        return auto_precision(*args)
    if name == "gpu_else":  # ${lyric:gpu_else,A,B}: A when a CUDA GPU is present, else B
        return args[0] if auto_accelerator() == "gpu" else args[1]
    if name == "new_dir":  # ${lyric:new_dir,outputs/...}: a run dir no other run shares (lyric_lm/run_dir.py)
        return new_dir(*args)
    if name == "job_label":  # ${lyric:job_label[,default]}: a sweep job's name, from what it varies; default elsewhere
        return job_label() or (args[0] if args else "")
    raise ValueError(f"unknown ${{lyric:{name}}}; known: auto_precision, gpu_else, new_dir, job_label")


def register_resolvers() -> None:
    """`${lyric:auto_precision}`, `${lyric:auto_precision,cpu}`, `${lyric:gpu_else,A,B}`, `${lyric:new_dir,path}`."""
    if not OmegaConf.has_resolver("lyric"):
        OmegaConf.register_new_resolver("lyric", _resolve)


def apply_runtime(tune_malloc_: bool = True, float32_matmul_precision: str | None = None) -> None:
    """The `runtime` config group: allocator tuning and TF32 (`high`) for float32 matmuls on GPUs."""
    import torch

    if tune_malloc_ and not tune_malloc():
        log.info("runtime.tune_malloc: not glibc, allocator left as it is")
    if float32_matmul_precision:
        torch.set_float32_matmul_precision(float32_matmul_precision)
