"""train(cfg): seed, build the data, model, callbacks and loggers from the config, fit, save the final state, export."""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf
from transformers.utils import logging as hf_logging

from lyric_lm.checkpointing import AtomicCheckpointIO, ExactResume
from lyric_lm.data import LyricsDataModule
from lyric_lm.errors import LyricLMError
from lyric_lm.export import export_best
from lyric_lm.loggers import log_run_end, log_run_start
from lyric_lm.manifest import RunManifest
from lyric_lm.model import parameters_line
from lyric_lm.module import LyricLM
from lyric_lm.precision import cached_autocast_for
from lyric_lm.run_dir import discard_unused_run_dir
from lyric_lm.runtime import apply_runtime
from lyric_lm.safety import RunGuard
from lyric_lm.sweep import JobStats, write_result
from lyric_lm.tokenizer import load_tokenizer
from lyric_lm.validation import resolve_resume, validate_config

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a dict of `_target_` configs (callbacks, loggers); null entries are skipped."""
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig) -> float | None:
    """Fit LyricLM as `cfg` says; returns the best `cfg.optimized_metric` (for sweepers) or None."""
    started = time.perf_counter()
    quiet_library_chatter()
    runtime = cfg.get("runtime") or {}
    apply_runtime(runtime.get("tune_malloc", True), runtime.get("float32_matmul_precision"))
    run = build_run(cfg)
    try:
        run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    except LyricLMError:
        if run.trainer.global_step == 0 and run.ckpt_path is None:  # refused before training: data that won't read
            discard_refused_run(set(BEFORE_FIRST_STEP))
        raise
    if (stopped := run.guard.stopped(run.out)) is not None:  # SIGTERM / Ctrl-C: last.ckpt saved at a step boundary
        raise stopped
    return finish_run(cfg, run, started)


class Run(NamedTuple):
    """What build_run makes: everything `Trainer.fit` needs, and the run dir it writes into."""

    out: Path
    ckpt_path: str | None
    module: LyricLM
    datamodule: LyricsDataModule
    trainer: L.Trainer
    loggers: list
    guard: RunGuard
    stats: JobStats
    report: RunReport


# Lightning's start-up lines that say nothing about this run (a product tip, settings left at their defaults).
LIGHTNING_CHATTER = ("Tip:", "was configured so", "to estimate number of stepping batches", "GPU available:", "TPU ")


FILE_ONLY = "lyric_lm_file_only"  # a log record with this attribute set goes to train.log, not to the console


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(words in record.getMessage() for words in LIGHTNING_CHATTER)


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


def quiet_library_chatter() -> None:
    """A first screen with the run's own lines: data, model size, precision, run dir, then the progress bar."""
    if HydraConfig.initialized():
        # Hydra's root handler already prints and files every record; Lightning's own would print each twice.
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
    for handler in logging.getLogger().handlers:  # Hydra's console handler (its file handler is a FileHandler)
        if type(handler) is logging.StreamHandler and not any(isinstance(f, _NotFileOnly) for f in handler.filters):
            handler.addFilter(_NotFileOnly())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropChatter) for f in rank_zero.filters):
        rank_zero.addFilter(_DropChatter())
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # the seed is in the config
    hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar at the export
    # Deprecations inside the libraries, not in anything a user wrote: torchdata's StatefulDataLoader calls an API
    # torch deprecated (every epoch), Lightning's pytree helper one of torch's.
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def build_run(cfg: DictConfig) -> Run:
    """Check the config, then build data, model, callbacks, loggers and Trainer; nothing is trained yet.

    A run refused here (a bad setting, a model that cannot be downloaded) leaves no trace: the run dir Hydra made
    for it is removed again, and nothing else was written. Data that cannot be read is found in `fit`
    (prepare_data), before the first step: train() removes that run's dir the same way.
    """
    try:
        return _build_run(cfg)
    except LyricLMError:
        discard_refused_run(set())
        raise


# What a run writes before its first optimizer step (a checkpoint is never among them).
BEFORE_FIRST_STEP = ("config_resolved.yaml", "manifest.json", "tensorboard", "csv", "wandb", "samples")


def discard_refused_run(written: set[str]) -> None:
    """Remove the run dir Hydra made for a run refused before it trained: its own `.hydra/` and log, and `written`.

    Only a dir this process made (lyric_lm/run_dir.py) holding nothing else; a run resuming elsewhere keeps that
    run's dir, and nothing outside Hydra's dir for this run is touched.
    """
    if HydraConfig.initialized():
        ours = {".hydra", f"{HydraConfig.get().job.name}.log", *written}
        discard_unused_run_dir(Path(HydraConfig.get().runtime.output_dir), frozenset(ours))


def _build_run(cfg: DictConfig) -> Run:
    validate_config(cfg)  # every problem at once, before tokenizing or loading a model
    ckpt_path, out = resolve_resume(cfg)
    if out != Path(cfg.paths.output_dir):  # resume=auto continues an earlier run in its own dir
        log.info(f"resuming {ckpt_path}; checkpoints and TensorBoard events go on in {out}")
        cfg.paths.output_dir = str(out)
    else:
        log.info(f"run dir: {out}")
    L.seed_everything(cfg.seed, workers=True)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    # prepare_data tokenizes into a cache keyed by inputs and options, once per node; setup memory-maps it.
    datamodule = LyricsDataModule(tokenizer=tokenizer, **OmegaConf.to_container(cfg.data, resolve=True))
    module = LyricLM(model=model_cfg, optim=OmegaConf.to_container(cfg.optim, resolve=True))
    log.info(parameters_line(module.model))
    context = module.model.config.n_positions if hasattr(module.model.config, "n_positions") else None
    if context is not None and datamodule.block_size > context:
        raise LyricLMError(
            f"data.block_size={datamodule.block_size} exceeds the model's context of {context} tokens; "
            f"set data.block_size={context} or less"
        )

    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(trainer_args.get("strategy"), dict):  # a strategy with settings (trainer=fsdp) has a _target_
        trainer_args["strategy"] = instantiate(cfg.trainer.strategy)
    fast_dev_run = bool(trainer_args.get("fast_dev_run"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not trainer_args.get("enable_progress_bar", True):  # Lightning refuses a bar callback with the bar off
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if fast_dev_run:  # a smoke test writes no checkpoint (Lightning's own on_train_end would write last.ckpt)
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    stats = JobStats()  # tokens/s for result.json
    ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    guard = RunGuard(Path(ckpt_cb.dirpath) if ckpt_cb and ckpt_cb.dirpath else out / "checkpoints")
    report = RunReport()
    callbacks += [stats, guard, ExactResume(), EpochCheck(), report]
    if not fast_dev_run:
        callbacks.append(RunManifest(cfg, out, tokenizer, resumed_from=ckpt_path))
    loggers = instantiate_all(cfg.get("logger"))
    plugins = [AtomicCheckpointIO()]
    if (precision := cached_autocast_for(trainer_args)) is not None:  # bf16-mixed with autocast's cast cache
        trainer_args.pop("precision")
        plugins.append(precision)
    try:
        trainer = L.Trainer(
            **trainer_args, callbacks=callbacks, logger=loggers, plugins=plugins, enable_checkpointing=not fast_dev_run
        )
    except (MisconfigurationException, ValueError) as err:  # Lightning's checks of its own arguments
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LyricLMError(f"the trainer.* settings were refused by Lightning: {reason}") from err
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()  # cpu, cuda, mps
    devices = f"{trainer.num_devices} device{'s' * (trainer.num_devices > 1)}"
    log.info(f"training on {device} ({devices}), precision {trainer.precision}")
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config_resolved.yaml", resolve=True)
    if not fast_dev_run:  # fast_dev_run swaps the loggers for a dummy: it writes no logs
        log_run_start(loggers, cfg, trainer.world_size)
    return Run(out, ckpt_path, module, datamodule, trainer, loggers, guard, stats, report)


class EpochCheck(L.Callback):
    """Settings that can only be checked against the data: `trainer.val_check_interval` (a number of batches)
    beyond an epoch, which Lightning refuses with a traceback once fit has begun. Checked once the data is set up,
    before configure_optimizers asks Lightning for the schedule's length (where Lightning would raise)."""

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        interval = trainer.val_check_interval
        if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or trainer.fast_dev_run:
            return
        batches = epoch_batches(trainer)
        if interval > batches:
            raise LyricLMError(
                f"trainer.val_check_interval={interval} is more batches than an epoch has ({batches}); set it to "
                f"{batches} or less, a fraction of an epoch (e.g. 0.5), or trainer.check_val_every_n_epoch=null "
                "to count batches across epochs"
            )


def epoch_batches(trainer: L.Trainer) -> int:
    """Training batches per epoch on each device, as Lightning will count them (limit_train_batches applied)."""
    blocks = len(trainer.datamodule.blocks["train"])
    per_device = math.ceil(blocks / trainer.world_size)
    batches = math.ceil(per_device / trainer.datamodule.batch_size)
    limit = trainer.limit_train_batches
    return min(batches, limit) if isinstance(limit, int) else int(batches * limit)


class RunReport(L.Callback):
    """Every validation's metrics as a line of train.log (a run reads without TensorBoard), and the best of them."""

    def __init__(self) -> None:
        self.best: tuple[float, float | None, int] | None = None  # (val/loss, val/ppl, step)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        loss, step = float(trainer.callback_metrics["val/loss"]), trainer.global_step
        ppl = float(trainer.callback_metrics["val/ppl"]) if "val/ppl" in trainer.callback_metrics else None
        if trainer.is_global_zero:
            ppl_text = f", val/ppl {ppl:,.1f}" if ppl is not None else ""
            line = f"validation at step {step} (epoch {trainer.current_epoch}): val/loss {loss:.4f}{ppl_text}"
            log.info(line, extra={FILE_ONLY: True})  # the console gets it above the progress bar instead
            if trainer.progress_bar_callback is not None:
                trainer.progress_bar_callback.print(line)
            else:
                print(line, flush=True)
        if math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, ppl, step)


def report_lines(run: Run, wall_s: float, exported: Path | None) -> list[str]:
    """The end of a run in a few lines: how it went, where its files are, and what to run next."""
    trainer, out = run.trainer, run.out
    speed = f", {run.stats.tokens_per_s:,.0f} tokens/s" if run.stats.tokens_per_s else ""
    lines = [f"finished in {wall_s / 60:.1f} min: {trainer.global_step} optimizer steps{speed}"]
    if run.report.best is not None:
        loss, ppl, step = run.report.best
        lines.append(f"best val/loss {loss:.4f}" + (f" (val/ppl {ppl:,.1f})" if ppl else "") + f" at step {step}")
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and getattr(ckpt, "best_model_path", ""):
        lines.append(f"best checkpoint: {ckpt.best_model_path}")
    if ckpt is not None:
        lines.append(f"last checkpoint: {Path(ckpt.dirpath) / 'last.ckpt'}")
    if exported is not None:
        lines.append(f"Hugging Face model: {exported}")
    lines.append("next:")
    lines.append(f"  tensorboard --logdir {out}")
    if exported is not None:
        lines.append(f'  python generate.py model_dir={exported} prompt="Down by the river"')
    elif ckpt is not None:
        lines.append(f'  python generate.py ckpt_path={Path(ckpt.dirpath) / "last.ckpt"} prompt="Down by the river"')
    return lines


def finish_run(cfg: DictConfig, run: Run, started: float) -> float | None:
    """Save the final state, export the best checkpoint, write result.json and the final hyperparameter metrics."""
    trainer, out = run.trainer, run.out
    # ModelCheckpoint writes last.ckpt at validation; a run ending between validations would lose its tail.
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath) if trainer.checkpoint_callback else out / "checkpoints"
    exported = None
    if not trainer.interrupted and not trainer.fast_dev_run:
        trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)  # the whole state: it resumes
        # Export the best checkpoint (else last.ckpt) as a Hugging Face model directory: <run>/hf_model/.
        if cfg.get("export_hf", True) and trainer.is_global_zero:
            run_config = OmegaConf.to_container(cfg, resolve=True)
            exported = export_best(trainer.checkpoint_callback, ckpt_dir, out / "hf_model", run_config)

    # The run's outcome, for the sweep summary (lyric_lm/sweep.py) and TensorBoard's hparams view.
    val_loss = best_metric(trainer, "val/loss")
    final = {"val_loss": val_loss, "val_ppl": math.exp(val_loss) if val_loss is not None and val_loss < 700 else None}
    if trainer.is_global_zero:
        write_result(
            out,
            "completed",
            **final,
            steps=trainer.global_step,
            wall_s=time.perf_counter() - started,
            tokens_per_s=run.stats.tokens_per_s,
        )
    if not trainer.fast_dev_run and trainer.is_global_zero:
        log_run_end(run.loggers, cfg, trainer.world_size)
    if trainer.is_global_zero:
        for line in report_lines(run, time.perf_counter() - started, exported):
            log.info(line)
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
