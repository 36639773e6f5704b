"""What the loggers get beyond Lightning's own: a short, readable set of hyperparameters, and the final metrics.

TensorBoard's HPARAMS tab shows one column per hyperparameter: a curated dozen (plus whatever a sweep varies) reads
at a glance, where the whole flattened config gave 113 columns led by `callbacks/checkpoint/_target_`. Its metric
columns are `val/loss` and `val/ppl` themselves, whose last values TensorBoard reads from the curves, so no extra
"best" scalars clutter the time-series view.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from lyric_lm.run_dir import swept_overrides

FINAL_METRICS = ("val/loss", "val/ppl")


def review_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters a reader compares runs by, flat and scalar, plus every key the run's overrides set."""
    get = lambda key: OmegaConf.select(cfg, key)  # noqa: E731
    devices = get("trainer.devices")
    per_step = get("data.batch_size") * get("trainer.accumulate_grad_batches") * get("trainer.num_nodes")
    hparams: dict[str, Any] = {
        "model": get("model.name_or_path") + (" (from scratch)" if get("model.from_scratch") else ""),
        "lr": get("optim.lr"),
        "batch_size": get("data.batch_size"),
        "accumulate_grad_batches": get("trainer.accumulate_grad_batches"),
        # sequences per optimizer step: batch x accumulation x devices (x nodes)
        "effective_batch": per_step * devices if isinstance(devices, int) else f"{per_step} x devices",
        "block_size": get("data.block_size"),
        "warmup": get("optim.warmup_steps") if get("optim.warmup_steps") is not None else get("optim.warmup_ratio"),
        "weight_decay": get("optim.weight_decay"),
        "max_epochs": get("trainer.max_epochs"),
        "max_steps": get("trainer.max_steps"),
        "precision": get("trainer.precision"),
        "data": get("data.path") or "builtin sample",
    }
    for override in swept_overrides():
        key = override.split("=", 1)[0]
        if "=" in override and key not in hparams and OmegaConf.select(cfg, key, default=None) is not None:
            hparams[key] = OmegaConf.select(cfg, key)
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}


def log_run_start(loggers: list[Logger], cfg: DictConfig) -> None:
    """Every logger records the curated hyperparameters (TensorBoard's hparams.yaml, MLflow params, CSV, W&B)."""
    hparams = review_hparams(cfg)
    for logger in loggers:
        logger.log_hyperparams(hparams)


def log_run_end(loggers: list[Logger], cfg: DictConfig) -> None:
    """TensorBoard: the HPARAMS entry with `val/loss` and `val/ppl` as its metric columns.

    Lightning's `log_hyperparams(params, metrics)` would also write those metrics at step 0 (a stray point on the
    curves), so the three hparams summaries are written here with torch's public `hparams()` instead. Other
    loggers show the last logged metrics beside the parameters on their own (MLflow, W&B) or in metrics.csv.
    """
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            summaries = hparams_summaries(review_hparams(cfg), dict.fromkeys(FINAL_METRICS, 0.0))
            with SummaryWriter(log_dir=logger.log_dir) as writer:
                for summary in summaries:
                    writer.file_writer.add_summary(summary)
        logger.finalize("success")
