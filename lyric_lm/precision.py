"""bf16-mixed on CPU with autocast's cache of weight casts on, as in torch (Lightning 2.6 turns it off)."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lyric_lm.runtime import auto_accelerator


class CachedAutocast(MixedPrecision):
    """Lightning's `bf16-mixed`, with `torch.autocast`'s weight-cast cache on inside each step.

    Lightning 2.6 enters autocast with `cache_enabled=False`, a workaround for casts cached under a nested
    `torch.no_grad()` that then lacked autograd history (Lightning #20644). Every weight cast then runs again: 5-9% of a
    bf16 step at the tiny shape on CPU (BENCHMARKS.md). Lightning PR #21616 restores the cache in the step and clears it
    when a nested `no_grad`/`inference_mode` exits; until a release carries it, this plugin does the same.
    """

    def __init__(self, device: str = "cpu"):
        super().__init__(precision="bf16-mixed", device=device)

    @contextmanager
    def forward_context(self) -> Generator[None, None, None]:
        with torch.autocast(self.device, dtype=torch.bfloat16, cache_enabled=True), _clear_cache_after_no_grad():
            yield


@contextmanager
def _clear_cache_after_no_grad() -> Generator[None, None, None]:
    """Clear autocast's cache whenever a `torch.no_grad()` / `torch.inference_mode()` block exits in this context."""
    originals = {cls: cls.__exit__ for cls in (torch.no_grad, torch.inference_mode)}

    def clearing(exit_):
        def __exit__(self, *exc_info):
            try:
                return exit_(self, *exc_info)
            finally:
                torch.clear_autocast_cache()  # casts made without autograd history must not serve the rest

        return __exit__

    for cls, exit_ in originals.items():
        cls.__exit__ = clearing(exit_)
    try:
        yield
    finally:
        for cls, exit_ in originals.items():
            cls.__exit__ = exit_


def cached_autocast_for(trainer_args: dict[str, Any]) -> CachedAutocast | None:
    """The plugin in place of `precision: bf16-mixed` for one CPU process; None where Lightning's own stays.

    GPUs, several devices and sharded strategies (FSDP, DeepSpeed bring their own precision plugins) keep Lightning's.
    """
    accelerator = str(trainer_args.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and auto_accelerator() == "cpu")
    single = str(trainer_args.get("devices", "auto")) in ("1", "auto") and trainer_args.get("num_nodes", 1) == 1
    plain_strategy = trainer_args.get("strategy", "auto") == "auto"
    if str(trainer_args.get("precision")) == "bf16-mixed" and on_cpu and single and plain_strategy:
        return CachedAutocast("cpu")
    return None
