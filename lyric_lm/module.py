"""LyricLM: the causal LM as a LightningModule — loss, metrics, optimizer and schedule."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from torchmetrics import MeanMetric

from lyric_lm.loss import chunked_lm_loss, supports_chunked_loss
from lyric_lm.model import build_causal_lm
from lyric_lm.optim import TimeBudget, build_adamw, build_scheduler, build_timed_scheduler, warmup_steps

log = logging.getLogger(__name__)


class LyricLM(L.LightningModule):
    """Fine-tunes a transformers causal LM; the Trainer does placement, precision, accumulation and stepping.

    Args:
        model: the `model` config group as a plain dict (name_or_path, from_scratch, config, tokenizer, lora,
            gradient_checkpointing, loss_chunk).
        optim: the `optim` config group (lr, weight_decay, betas, eps, warmup_steps, warmup_ratio).
        hf_config: the transformers config of the built model; filled in on first construction and saved
            with the hyperparameters, so `LyricLM.load_from_checkpoint(path)` rebuilds it offline.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any], hf_config: dict[str, Any] | None = None):
        super().__init__()
        # The run's full config goes to the logger from pipeline.train; here only what rebuilds the module.
        self.save_hyperparameters(logger=False)
        self.model = build_causal_lm(model, hf_config)
        if hf_config is None:
            self.hparams["hf_config"] = self.model.config.to_dict()
        self.val_loss = MeanMetric()
        self.loss_chunk = model.get("loss_chunk") if supports_chunked_loss(self.model) else None
        self.optimizer_options: dict[str, Any] = {}  # extra torch.optim.AdamW arguments (speed.fused_adamw: fused)
        self.time_budget: TimeBudget | None = None  # with trainer.max_time: sizes the schedule to the budget
        self.budget_timer: Timer | None = None  # Lightning's clock for trainer.max_time (resumed runs included)

    def forward(self, input_ids: torch.Tensor, **kwargs) -> Any:
        return self.model(input_ids=input_ids, **kwargs)

    def lm_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean next-token loss of a batch; in chunks of tokens when `model.loss_chunk` is set."""
        if not self.loss_chunk:
            return self.model(**batch).loss
        hidden = self.model.base_model(input_ids=batch["input_ids"]).last_hidden_state  # (B, T, d)
        return chunked_lm_loss(hidden, self.model.get_output_embeddings().weight, batch["labels"], self.loss_chunk)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.lm_loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch["input_ids"].size(0))
        if "attention_mask" in batch:  # padded batches (data.packing=false): share of pad tokens, averaged per epoch
            pad_share = 1 - batch["attention_mask"].float().mean()
            self.log("train/pad_share", pad_share, on_step=False, on_epoch=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.lm_loss(batch)
        # Weight each batch by its predicted tokens, so val/loss is the mean over tokens, not over batches.
        n_tokens = (batch["labels"][:, 1:] != -100).sum()
        self.val_loss.update(loss.float(), weight=n_tokens)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))
        if self.time_budget is not None and not self.trainer.sanity_checking:  # before the checkpoint is written
            step = self.trainer.global_step
            self.size_schedule(step, self.time_budget.validation_ended(step, time.monotonic()))

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Timed here rather than in on_train_batch_end, which runs after the callbacks' (a checkpoint at this step
        # then holds the schedule as sized), and once per optimizer step whatever the accumulation.
        if self.time_budget is not None:
            step = self.trainer.global_step + 1  # Lightning counts this step once the hook returns
            self.size_schedule(step, self.time_budget.step_ended(step, time.monotonic()))

    def size_schedule(self, step: int, step_s: float | None) -> None:
        """From optimizer step `step` on, end the schedule when trainer.max_time runs out, at `step_s` s/step."""
        if step_s is None:
            return
        # Every DDP process must follow the same schedule: rank 0's measurement and clock decide for all.
        step_s, remaining_s = self.trainer.strategy.broadcast((step_s, self.budget_timer.time_remaining()))
        if remaining_s <= 0:
            return  # the validation Lightning runs as the budget stops the run: nothing left to size
        first = self.time_budget.schedule.step_s is None
        self.time_budget.resize(step, remaining_s, step_s)
        total = self.time_budget.schedule.total
        budget = timedelta(seconds=round(self.budget_timer.time_elapsed() + remaining_s))
        capped = " (max_epochs / max_steps end the run first)" if total >= self.time_budget.max_total else ""
        log.log(
            logging.INFO if first else logging.DEBUG,  # once; the re-sizes at each validation at debug level
            f"max_time {budget}: ~{total:,} optimizer steps at {step_s:.3g} s/step; "
            f"the learning rate reaches 0 at step {total:,}{capped}",
        )

    def configure_optimizers(self):
        cfg = self.hparams.optim
        extra = self.optimizer_options
        optimizer = build_adamw(self.model, cfg["lr"], cfg["weight_decay"], cfg["betas"], cfg.get("eps", 1e-8), **extra)
        # Counts accumulation, epochs, max_steps, limit_train_batches and devices: one optimizer step each.
        total = self.trainer.estimated_stepping_batches
        warmup = warmup_steps(total, cfg.get("warmup_steps"), cfg.get("warmup_ratio", 0.0))
        self.budget_timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if self.budget_timer is None or self.budget_timer.time_remaining() is None:
            scheduler = build_scheduler(optimizer, warmup, int(total))
        else:  # the same schedule until the first steps are timed, then sized to end with the time budget
            scheduler = build_timed_scheduler(optimizer, warmup, int(total))
            min_steps = self.trainer.min_steps or 0  # Lightning trains that long even past max_time
            warmup_cfg = (cfg.get("warmup_steps"), cfg.get("warmup_ratio", 0.0))
            self.time_budget = TimeBudget(scheduler.lr_lambdas[0], total, *warmup_cfg, min_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }
