"""The speed layer applied: every option that changes how a step is computed, never what it computes, by one call.

`pipeline.train` builds the data, the model and the Trainer's arguments as the recipe says, then calls
`apply_speed(cfg.speed, module)` once; nothing else in lyric_lm knows about speed. The options live in the `speed`
config group (conf/speed/: off, cpu, gpu, auto), not in the model's hyperparameters, so a checkpoint loads for
generation the same whichever options trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import lightning as L
import torch

from lyric_lm import compat
from lyric_lm.errors import LyricLMError
from lyric_lm.speed import cpu_ops
from lyric_lm.speed.allocator import malloc_keeps_freed_memory, tune_malloc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedOptions:
    """The `speed` config group (conf/speed/off.yaml documents each key)."""

    tune_malloc: bool = True
    free_grads_early: bool = True
    float32_matmul_precision: str | None = None
    compile: bool = False
    fused_adamw: bool = False
    fused_gelu: bool = False
    fast_dropout: bool = False
    sparse_embedding_grad: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> SpeedOptions:
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if cfg and f.name in cfg})


def apply_speed(cfg: Mapping[str, Any] | None, module: L.LightningModule) -> list[L.Callback]:
    """Apply the speed options to the process and to `module` (a LyricLM); returns the callbacks that apply the
    rest during training (add them to the Trainer's)."""
    options = SpeedOptions.from_config(cfg)
    if options.tune_malloc and not tune_malloc():
        log.info("speed.tune_malloc: not glibc, the allocator is left as it is")
    if options.float32_matmul_precision:
        torch.set_float32_matmul_precision(options.float32_matmul_precision)
    model = module.model
    if options.fused_gelu:
        log.info(f"speed.fused_gelu: {cpu_ops.use_fused_gelu(model)} gelu_new activations now one kernel each")
    if options.fast_dropout:
        swapped = cpu_ops.use_fast_dropout(model)
        log.info(f"speed.fast_dropout: {swapped} dropout modules (and SDPA's attention dropout) draw masks faster")
    if options.compile:
        # In place (nn.Module.compile), so state_dict keys and checkpoints stay those of the plain model. The chunked
        # loss (model.loss_chunk) runs the body alone, so the body is what gets compiled then.
        (model.base_model if getattr(module, "loss_chunk", None) else model).compile()
    if options.fused_adamw:
        module.optimizer_options = {**getattr(module, "optimizer_options", {}), "fused": True}
    return [SpeedUp(options)]


class SpeedUp(L.Callback):
    """The speed options that act while training: the sparse embedding gradient, the clipping folded into the fused
    AdamW kernel, and gradients freed as soon as the optimizer step is done."""

    def __init__(self, options: SpeedOptions):
        self.options = options
        self.clip_val: float | None = None  # the clipping this callback does in place of Lightning's
        self._step = 0  # the optimizer step whose gradients were freed

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        # One process only: DDP would expect the embedding's gradient to arrive sparse (it arrives dense, summed with
        # the tied output layer's), and compiled graphs are traced with the dense lookup.
        opts = self.options
        one_process = stage == "fit" and not opts.compile and trainer.world_size == 1
        if one_process and opts.sparse_embedding_grad and cpu_ops.use_sparse_embedding_grad(pl_module.model):
            log.info("speed.sparse_embedding_grad: the tied input embedding's gradient is computed sparse")
        # Lightning refuses to clip for a fused optimizer under any mixed precision, for fp16's GradScaler; bf16-mixed
        # and 32-true have no scaler, and there the same clipping folds into the fused kernel (clip_in_fused_step).
        no_scaler = getattr(trainer.precision_plugin, "scaler", None) is None
        by_norm = trainer.gradient_clip_algorithm in (None, "norm")
        if stage == "fit" and opts.fused_adamw and trainer.gradient_clip_val and no_scaler and by_norm:
            self.clip_val, trainer.gradient_clip_val = float(trainer.gradient_clip_val), None
        elif stage == "fit" and opts.fused_adamw and trainer.gradient_clip_val and not no_scaler:
            raise LyricLMError(
                "speed.fused_adamw with gradient clipping needs bf16-mixed or 32-true (16-mixed's GradScaler "
                "unscales inside the fused step); set speed.fused_adamw=false or trainer.precision=bf16-mixed"
            )

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        if self.clip_val is not None:  # the Trainer's setting as it was given
            trainer.gradient_clip_val, self.clip_val = self.clip_val, None

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._step = trainer.global_step  # a resumed run starts at its checkpoint's step

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module, optimizer) -> None:
        if self.clip_val is not None:
            clip_in_fused_step(compat.unwrap_optimizer(optimizer), list(pl_module.parameters()), self.clip_val)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Lightning zeroes gradients inside the next step's closure, after its forward pass, so the gradients (the
        # size of the model in float32) stay alive through that forward's activation peak. Freed here instead, right
        # after the step, where the allocator keeps freed memory for reuse: a GPU's caching allocator, or glibc after
        # speed.tune_malloc. Under glibc's defaults the freed block would go back to the OS and the next forward
        # would page-fault it in again, so there Lightning's timing is kept.
        if trainer.global_step == self._step or not self.options.free_grads_early:
            return  # mid-way through gradient accumulation: the gradients are still being summed
        self._step = trainer.global_step
        if pl_module.device.type != "cpu" or malloc_keeps_freed_memory():
            for optimizer in trainer.optimizers:
                optimizer.zero_grad(set_to_none=True)


def clip_in_fused_step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], clip_val: float) -> None:
    """Clip the gradients' total norm to `clip_val` inside a fused Adam/AdamW step, as clip_grad_norm_ would.

    The fused kernel divides each gradient by the divisor as it reads it and stores the result, so `.grad` ends up
    as clip_grad_norm_ leaves it, without that separate pass over every gradient. Other optimizers get
    clip_grad_norm_ itself.
    """
    fused = optimizer.defaults.get("fused") and isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW)
    if not fused:
        torch.nn.utils.clip_grad_norm_(params, clip_val)
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    compat.divide_grads_in_fused_step(optimizer, ((norm + 1e-6) / clip_val).clamp(min=1.0))  # 1 / clip_grad_norm_'s
