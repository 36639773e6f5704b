"""Which accelerator and precision pay on this machine: `${lyric:auto_precision}` and `${lyric:gpu_else,A,B}`."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


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
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator == "gpu":
        return "bf16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def auto_accelerator() -> str:
    """`gpu` when a CUDA GPU is present, else `cpu`."""
    return "gpu" if torch.cuda.is_available() else "cpu"
