"""Every private name of Lightning, torch, torchdata and transformers that lyric_lm touches, in one place.

Each function below says what it reaches into and the versions it was verified on; pyproject.toml bounds those
libraries to the same ranges, and tests/test_compat.py fails naming the internal when an upgrade changes one.
Nothing else in lyric_lm uses a private name of these libraries.
"""

from __future__ import annotations

from typing import Any, get_args

import lightning as L
import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from transformers import AttentionInterface
from transformers.activations import NewGELUActivation
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

# The ranges verified (CI runs the suite at the floors and at the newest allowed); keep in step with pyproject.toml.
VERIFIED = {
    "lightning": ("2.4", "2.6.*"),
    "torch": ("2.13", "2.13.*"),
    "torchdata": ("0.8", "0.11.*"),
    "transformers": ("5.1", "5.24.*"),
}


# ---- Lightning ----------------------------------------------------------------------------------------------------


def _flatten_literals(tp) -> set:
    args = get_args(tp)
    return {tp} if not args else set().union(*(_flatten_literals(a) for a in args))


# `trainer.precision` values Lightning accepts (32-true, bf16-mixed, 16, "64", ...): its private Literal type.
PRECISIONS = frozenset(str(p) for p in _flatten_literals(_PRECISION_INPUT))


def collect_rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states (lightning.fabric.utilities.seed._collect_rng_states)."""
    return _collect_rng_states(include_cuda=True)


def set_rng_states(states: dict[str, Any]) -> None:
    """The inverse of collect_rng_states (lightning.fabric.utilities.seed._set_rng_states)."""
    _set_rng_states(states)


def restore_train_loader_position(trainer: L.Trainer) -> bool:
    """Apply a resumed checkpoint's train-loader position that Lightning dropped, and rebuild the fetcher's iterator.

    Lightning restores a stateful loader only if it builds the loader after loading the checkpoint, but
    `trainer.estimated_stepping_batches` builds it before. Reaches into FitLoop's `_combined_loader`,
    `_combined_loader_states_to_load`, `_data_fetcher`, CombinedLoader's `_load_state_dicts` and torchdata's
    `_num_yielded` state key. Returns whether a position was applied.
    """
    loop = trainer.fit_loop
    states = getattr(loop, "_combined_loader_states_to_load", None)
    if not (states and loop.restarting and loop._combined_loader is not None and loop._data_fetcher is not None):
        return False
    loop._combined_loader._load_state_dicts(states)
    loop._combined_loader_states_to_load = []
    for loader, state in zip(loop._combined_loader.flattened, states, strict=False):
        if state.get("_num_yielded", 0) >= len(loader):  # saved after the epoch's last batch:
            for _ in loader:  # drain the empty rest, so the next epoch starts on its own order
                pass
    iter(loop._data_fetcher)
    return True


def log_step_metrics_now(trainer: L.Trainer) -> None:
    """Hand this step's logged metrics to the loggers now, not after the train-batch-end hooks
    (Trainer._logger_connector.update_train_step_metrics)."""
    trainer._logger_connector.update_train_step_metrics()


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The optimizer step ModelCheckpoint last saved at (its `_last_global_step_saved`)."""
    return callback._last_global_step_saved


def set_last_saved_step(callback: ModelCheckpoint, step: int) -> None:
    """Tell ModelCheckpoint it saved (step) or did not (-1) at this step: it skips a second save at a saved step."""
    callback._last_global_step_saved = step


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer under Lightning's LightningOptimizer wrapper (its `_optimizer`), or `optimizer` itself."""
    return getattr(optimizer, "_optimizer", optimizer)


# ---- torch --------------------------------------------------------------------------------------------------------


def divide_grads_in_fused_step(optimizer: torch.optim.Optimizer, divisor: torch.Tensor) -> None:
    """Make a fused Adam/AdamW step divide every gradient by `divisor` as it reads it, and store the result.

    The `grad_scale` attribute is the hook torch's GradScaler uses to unscale inside the fused kernel
    (torch.optim.adam: `getattr(self, "grad_scale", None)`); the kernel also writes the divided gradient back.
    """
    optimizer.grad_scale = divisor


# ---- transformers -------------------------------------------------------------------------------------------------


def register_attention(name: str, forward) -> None:
    """Make `attn_implementation=name` known to transformers, with SDPA's masks (its attention and mask registries)."""
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)


# transformers' own SDPA attention forward, which the CPU dropout variant falls back to.
sdpa_attention = sdpa_attention_forward


def runs_sdpa(model: nn.Module) -> bool:
    """True if `model` computes attention with SDPA and lets its implementation be swapped
    (config._attn_implementation, PreTrainedModel._can_set_attn_implementation)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) == "sdpa" and model._can_set_attn_implementation()


# transformers' `gelu_new` activation module (GPT-2's), to find and swap.
GELU_NEW = NewGELUActivation
