"""train(cfg): seed, build the data, model, callbacks and loggers from the config, fit, save the final state."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from lyric_lm.data import LyricsDataModule
from lyric_lm.errors import LyricLMError
from lyric_lm.module import LyricLM
from lyric_lm.runtime import apply_runtime
from lyric_lm.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a dict of `_target_` configs (callbacks, loggers); null entries are skipped."""
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig) -> float | None:
    """Fit LyricLM as `cfg` says; returns the best `cfg.optimized_metric` (for sweepers) or None."""
    if HydraConfig.initialized():
        # Hydra's root handler already prints and files every record; Lightning's own would print each twice.
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
    runtime = cfg.get("runtime") or {}
    apply_runtime(runtime.get("tune_malloc", True), runtime.get("float32_matmul_precision"))
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config_resolved.yaml", resolve=True)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    datamodule = LyricsDataModule(tokenizer=tokenizer, **OmegaConf.to_container(cfg.data, resolve=True))
    module = LyricLM(model=model_cfg, optim=OmegaConf.to_container(cfg.optim, resolve=True))
    context = module.model.config.n_positions if hasattr(module.model.config, "n_positions") else None
    if context is not None and datamodule.block_size > context:
        raise LyricLMError(f"data.block_size={datamodule.block_size} exceeds the model's context of {context} tokens")

    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not trainer_args.get("enable_progress_bar", True):  # Lightning refuses a bar callback with the bar off
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_all(cfg.get("logger"))
    trainer = L.Trainer(**trainer_args, callbacks=callbacks, logger=loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    # ModelCheckpoint writes last.ckpt at validation; a run ending between validations would lose its tail.
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath) if trainer.checkpoint_callback else out / "checkpoints"
    if not trainer.interrupted and not trainer.fast_dev_run:
        trainer.save_checkpoint(ckpt_dir / "last.ckpt")
    return best_metric(trainer, cfg.get("optimized_metric"))


def best_metric(trainer: L.Trainer, name: str | None) -> float | None:
    """The checkpoint callback's best score when it monitors `name`, else the last logged value."""
    if not name:
        return None
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.monitor == name and ckpt.best_model_score is not None:
        value = float(ckpt.best_model_score)
    elif name in trainer.callback_metrics:
        value = float(trainer.callback_metrics[name])
    else:
        return None
    return value if math.isfinite(value) else None
