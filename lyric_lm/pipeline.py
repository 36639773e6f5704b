"""train(cfg) in three steps: build the run (data, model, speed, callbacks, loggers, Trainer), fit, finish."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import NamedTuple

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf

from lyric_lm.console import quiet_library_chatter
from lyric_lm.data import LyricsDataModule
from lyric_lm.errors import LyricLMError
from lyric_lm.loggers import log_run_end, log_run_start
from lyric_lm.model import parameters_line
from lyric_lm.module import LyricLM
from lyric_lm.run.checkpoints import AtomicCheckpointIO, ExactResume
from lyric_lm.run.dirs import BEFORE_FIRST_STEP, discard_refused_run
from lyric_lm.run.guard import RunGuard
from lyric_lm.run.manifest import RunManifest
from lyric_lm.run.report import RunReport, best_metric, report_lines
from lyric_lm.run.resume import resolve_resume
from lyric_lm.run.sweep import JobStats, write_result
from lyric_lm.songs.export import export_best
from lyric_lm.speed.apply import apply_speed
from lyric_lm.tokenizer import load_tokenizer
from lyric_lm.validation import EpochCheck, block_size_problem, config_problems

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fit LyricLM as `cfg` says; returns the best `cfg.optimized_metric` (for sweepers) or None."""
    started = time.perf_counter()
    quiet_library_chatter()
    run = build_run(cfg)
    fit(run)
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


def build_run(cfg: DictConfig) -> Run:
    """Check the config, then build data, model, callbacks, loggers and Trainer; nothing is trained yet.

    A run refused here (a bad setting, a model that cannot be downloaded) leaves no trace: the run dir Hydra made
    for it is removed again, and nothing else was written. Data that cannot be read is found in `fit`
    (prepare_data), before the first step, and its run dir is removed the same way.
    """
    try:
        ckpt_path, out = check_run(cfg)
        L.seed_everything(cfg.seed, workers=True)
        module, datamodule, tokenizer = build_model_and_data(cfg)
        callbacks, loggers = build_callbacks(cfg), instantiate_all(cfg.get("logger"))
        callbacks += apply_speed(cfg.get("speed"), module)  # every speed option, here and nowhere else
        run_callbacks = RunCallbacks.add_to(callbacks, cfg, out, tokenizer, ckpt_path)
        trainer = build_trainer(cfg, callbacks, loggers)
    except LyricLMError:
        discard_refused_run(set())
        raise
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config_resolved.yaml", resolve=True)
    if not trainer.fast_dev_run:  # fast_dev_run swaps the loggers for a dummy: it writes no logs
        log_run_start(loggers, cfg, trainer.world_size)
    return Run(out, ckpt_path, module, datamodule, trainer, loggers, *run_callbacks)


def check_run(cfg: DictConfig) -> tuple[str | None, Path]:
    """The config check and the resume lookup, every problem of both in one error; then (ckpt_path, run dir)."""
    problems = config_problems(cfg)  # before tokenizing or loading a model
    try:
        ckpt_path, out = resolve_resume(cfg)
    except LyricLMError as err:
        problems.append(str(err))
    if problems:  # exit_on_user_error prefixes the first line; the others get the same prefix
        raise LyricLMError("\nerror: ".join(problems))
    if out != Path(cfg.paths.output_dir):  # resume=auto continues an earlier run in its own dir
        log.info(f"resuming {ckpt_path}; checkpoints and TensorBoard events go on in {out}")
        cfg.paths.output_dir = str(out)
    else:
        log.info(f"run dir: {out}")
    return ckpt_path, out


def build_model_and_data(cfg: DictConfig) -> tuple[LyricLM, LyricsDataModule, object]:
    """LyricLM and LyricsDataModule from their config groups, as plain containers (checkpoints stay loadable)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    # prepare_data tokenizes into a cache keyed by inputs and options, once per node; setup memory-maps it.
    datamodule = LyricsDataModule(tokenizer=tokenizer, **OmegaConf.to_container(cfg.data, resolve=True))
    module = LyricLM(model=model_cfg, optim=OmegaConf.to_container(cfg.optim, resolve=True))
    log.info(parameters_line(module.model))
    context = getattr(module.model.config, "n_positions", None)  # known now even for hub models
    if (problem := block_size_problem(datamodule.block_size, context)) is not None:
        raise LyricLMError(problem)
    return module, datamodule, tokenizer


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate each entry of a dict of `_target_` configs (callbacks, loggers); null entries are skipped."""
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The `callbacks` group, less what a run without a bar or a smoke test (fast_dev_run) cannot take."""
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback with the bar off
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.trainer.get("fast_dev_run"):  # a smoke test writes no checkpoint (Lightning's on_train_end would)
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    return callbacks


class RunCallbacks(NamedTuple):
    """The run-safety and reporting callbacks every run gets, beside the configured ones."""

    guard: RunGuard
    stats: JobStats
    report: RunReport

    @classmethod
    def add_to(cls, callbacks: list, cfg: DictConfig, out: Path, tokenizer, ckpt_path: str | None) -> RunCallbacks:
        ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
        ckpt_dir = Path(ckpt_cb.dirpath) if ckpt_cb and ckpt_cb.dirpath else out / "checkpoints"
        ours = cls(RunGuard(ckpt_dir), JobStats(), RunReport())
        callbacks += [*ours, ExactResume(), EpochCheck()]
        if not cfg.trainer.get("fast_dev_run"):
            callbacks.append(RunManifest(cfg, out, tokenizer, resumed_from=ckpt_path))
        return ours


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    """The Lightning Trainer from the `trainer` group; its own refusals become one line."""
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(trainer_args.get("strategy"), dict):  # a strategy with settings (trainer=fsdp) has a _target_
        trainer_args["strategy"] = instantiate(cfg.trainer.strategy)
    try:
        trainer = L.Trainer(
            **trainer_args,
            callbacks=callbacks,
            logger=loggers,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=not trainer_args.get("fast_dev_run"),
        )
    except (MisconfigurationException, ValueError) as err:  # Lightning's checks of its own arguments
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LyricLMError(f"the trainer.* settings were refused by Lightning: {reason}") from err
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()  # cpu, cuda, mps
    devices = f"{trainer.num_devices} device{'s' * (trainer.num_devices > 1)}"
    log.info(f"training on {device} ({devices}), precision {trainer.precision}")
    return trainer


def fit(run: Run) -> None:
    """Trainer.fit; a run refused before its first step leaves no run dir, one stopped by a signal says how to go on."""
    try:
        run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    except LyricLMError:
        if run.trainer.global_step == 0 and run.ckpt_path is None:  # refused before training: data that won't read
            discard_refused_run(set(BEFORE_FIRST_STEP))
        raise
    if (stopped := run.guard.stopped(run.out)) is not None:  # SIGTERM / Ctrl-C: last.ckpt saved at a step boundary
        raise stopped


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

    # The run's outcome, for the sweep summary (lyric_lm/run/sweep.py) and TensorBoard's hparams view.
    val_loss = best_metric(trainer, "val/loss")
    final = {"val_loss": val_loss, "val_ppl": math.exp(val_loss) if val_loss is not None and val_loss < 700 else None}
    wall_s = time.perf_counter() - started
    if trainer.is_global_zero:
        stats = {"steps": trainer.global_step, "wall_s": wall_s, "tokens_per_s": run.stats.tokens_per_s}
        write_result(out, "completed", **final, **stats)
        if not trainer.fast_dev_run:
            log_run_end(run.loggers, cfg, trainer.world_size)
        for line in report_lines(trainer, out, run.report, run.stats.tokens_per_s, wall_s, exported):
            log.info(line)
    return best_metric(trainer, cfg.get("optimized_metric"))
