"""AdamW parameter groups, warmup length and the warmup-then-linear-decay schedule: pure functions."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from lyric_lm.errors import LyricLMError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (dim >= 2: linear/Conv1D weights, embeddings) but not biases or LayerNorm weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, "name": "decay"},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float = 1e-8, **kwargs
) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps, **kwargs)


def warmup_steps(total_steps: float, warmup_steps: int | None, warmup_ratio: float) -> int:
    """Warmup length in optimizer steps: `warmup_steps` if set, else `warmup_ratio` of the run, rounded."""
    if not math.isfinite(total_steps) or total_steps <= 0:
        raise LyricLMError("the run has no end: set trainer.max_steps or trainer.max_epochs")
    total_steps = int(total_steps)
    steps = warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps)
    if not 0 <= steps < max(total_steps, 1):
        raise LyricLMError(
            f"warmup of {steps} optimizer steps does not fit a run of {total_steps}; "
            "lower optim.warmup_steps / optim.warmup_ratio or train longer"
        )
    return steps


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total_steps: int):
    """LR multiplier 0 at step 0, 1 at the end of warmup, then linear to 0 at `total_steps`."""
    return get_linear_schedule_with_warmup(optimizer, warmup, int(total_steps))
