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

from lyric_lm.run.dirs import swept_overrides

FINAL_METRICS = ("val/loss", "val/ppl")


# The columns a reader compares runs by: name -> config key.
REVIEWED = {
    "lr": "optim.lr",
    "batch_size": "data.batch_size",
    "accumulate_grad_batches": "trainer.accumulate_grad_batches",
    "block_size": "data.block_size",
    "weight_decay": "optim.weight_decay",
    "max_epochs": "trainer.max_epochs",
    "max_steps": "trainer.max_steps",
    "precision": "trainer.precision",
}


def review_hparams(cfg: DictConfig, world_size: int = 1) -> dict[str, Any]:
    """The hyperparameters a reader compares runs by, flat and scalar, plus every other key the overrides set."""
    get = lambda key: OmegaConf.select(cfg, key, default=None)  # noqa: E731
    hparams: dict[str, Any] = {
        "model": f"{get('model.name_or_path')}{' (from scratch)' if get('model.from_scratch') else ''}",
        **{name: get(key) for name, key in REVIEWED.items()},
        # sequences per optimizer step: batch x accumulation x processes
        "effective_batch": get("data.batch_size") * get("trainer.accumulate_grad_batches") * world_size,
        "warmup": get("optim.warmup_steps") if get("optim.warmup_steps") is not None else get("optim.warmup_ratio"),
        "data": get("data.path") or "builtin sample",
    }
    reviewed_keys = {*REVIEWED.values(), "optim.warmup_steps", "optim.warmup_ratio", "data.path"}
    for override in swept_overrides():
        key = override.split("=", 1)[0]
        value = get(key)
        if key in reviewed_keys or isinstance(value, DictConfig) or value is None:  # a group choice: its keys count
            continue
        hparams[key] = value
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}


def log_run_start(loggers: list[Logger], cfg: DictConfig, world_size: int) -> None:
    """Every logger records the curated hyperparameters (TensorBoard's hparams.yaml, MLflow params, CSV, W&B)."""
    hparams = review_hparams(cfg, world_size)
    for logger in loggers:
        logger.log_hyperparams(hparams)


def log_run_end(loggers: list[Logger], cfg: DictConfig, world_size: int) -> None:
    """TensorBoard: the HPARAMS entry with `val/loss` and `val/ppl` as its metric columns.

    Lightning's `log_hyperparams(params, metrics)` would also write those metrics at step 0 (a stray point on the
    curves), so the three hparams summaries are written here with torch's public `hparams()` instead. Other
    loggers show the last logged metrics beside the parameters on their own (MLflow, W&B) or in metrics.csv.
    """
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            summaries = hparams_summaries(review_hparams(cfg, world_size), dict.fromkeys(FINAL_METRICS, 0.0))
            with SummaryWriter(log_dir=logger.log_dir) as writer:
                for summary in summaries:
                    writer.file_writer.add_summary(summary)
        logger.finalize("success")
