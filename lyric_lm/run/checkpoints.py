"""Checkpoints that survive kills and resume exactly: atomic writes, step-interval saves, RNG state, resume lookup."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lyric_lm import compat
from lyric_lm.errors import LyricLMError
from lyric_lm.run.files import atomic_write

log = logging.getLogger(__name__)

LAST = "last.ckpt"
# What to do when a checkpoint cannot be written (full disk, read-only folder).
SAVE_FAILED = (
    "free space or make it writable, then resume (resume=auto run_dir=<run>), or train elsewhere (hydra.run.dir=<dir>)"
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file next to the target, fsync, then rename over it; load as data only.

    A rename within one folder is atomic on POSIX file systems, so a kill during a save leaves the previous
    checkpoint whole, never a truncated one. Unlike Lightning's default, the checkpoint is not first serialized
    into memory, which doubles peak RAM for GPT-2-sized states.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote file systems: Lightning's fsspec transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, SAVE_FAILED) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only: bool | None = None):
        # Resuming reads a checkpoint as data only, whatever Lightning asks for: see read_checkpoint.
        return read_checkpoint(path, map_location=map_location)


def check_checkpoint_file(path) -> None:
    """Raise one clear line if `path` is not a complete checkpoint file (cheap: no tensors are read).

    torch.save writes a zip archive whose directory sits at the end, so a truncated file fails this test.
    """
    path = Path(path)
    if not path.is_file():
        raise LyricLMError(f"checkpoint {path} does not exist; check the path (checkpoints are in <run>/checkpoints/)")
    if not zipfile.is_zipfile(path):
        raise LyricLMError(f"checkpoint {path} is truncated or not a PyTorch checkpoint; {OTHER_CHECKPOINT}")


OTHER_CHECKPOINT = "point ckpt_path at another checkpoint, e.g. an earlier step*.ckpt of the same run"


def read_checkpoint(path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The contents of a lyric_lm checkpoint, read as data only; one line naming the file when it is not one.

    `weights_only=True` makes torch rebuild tensors, containers and plain values and nothing else, so a file
    carrying other Python objects (whose unpickling can run any code) is refused before any of it runs. Passed
    explicitly it also holds under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: torch 2.13 lets that variable override only
    a torch.load call that leaves weights_only unset (torch/serialization.py). `mmap=True` reads no tensor data
    until it is used: for a look at the metadata.
    """
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        raise LyricLMError(
            f"checkpoint {path} holds Python objects other than tensors and plain values, and was refused: "
            f"loading them could run code; {OTHER_CHECKPOINT}"
        ) from err
    except Exception as err:  # a damaged or foreign archive: RuntimeError, EOFError, ValueError, ... from torch
        raise LyricLMError(
            f"checkpoint {path} is damaged or not a PyTorch checkpoint ({type(err).__name__}); {OTHER_CHECKPOINT}"
        ) from err
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise LyricLMError(
            f"checkpoint {path} is not a lyric_lm checkpoint (it has no state_dict and hyper_parameters); "
            f"{OTHER_CHECKPOINT}"
        )
    return checkpoint


class LyricCheckpoint(ModelCheckpoint):
    """ModelCheckpoint keeping the best `save_top_k` by `monitor` at validation, plus `last.ckpt` every N steps.

    Lightning's own `every_n_train_steps` also feeds the top-k with a stale or missing validation metric
    and turns off the saves at validation; here the step-interval saves only refresh `last.ckpt`.

    Args:
        every_n_train_steps: write `last.ckpt` every this many optimizer steps; null or 0 for validation only.
    """

    def __init__(self, *args, every_n_train_steps: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.every_n_steps = every_n_train_steps or 0
        self._step_saved = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or trainer.fast_dev_run:
            return
        if trainer.sanity_checking or compat.last_saved_step(self) == step:  # micro-batches share one step
            return
        self.save_last_now(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if self._step_saved == trainer.global_step and not trainer.should_stop:
            compat.set_last_saved_step(self, -1)  # that save wrote last.ckpt only: the top-k still gets its turn
        super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        # Lightning would write last.ckpt again here, after the loops closed the epoch: a run stopped mid-epoch
        # (SIGTERM) would then resume at the next epoch. The save at the step boundary already holds this step.
        if self._step_saved != trainer.global_step:
            super().on_train_end(trainer, pl_module)

    def save_last_now(self, trainer: L.Trainer) -> Path:
        """Write `<dirpath>/last.ckpt` with the current state (at a step boundary: mid-step state is not whole)."""
        path = Path(self.dirpath) / LAST
        self.last_model_path = str(path)  # part of the saved state; stops ModelCheckpoint from making last-v1.ckpt
        flush_step_metrics(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        # Nothing else saves at this step (an end-of-epoch save would record a different loop state).
        self._step_saved = trainer.global_step
        compat.set_last_saved_step(self, trainer.global_step)
        return path


def flush_step_metrics(trainer: L.Trainer) -> None:
    """Log this step's metrics now and flush the loggers, before a checkpoint of this step becomes visible.

    Lightning logs a step's metrics only after the train-batch-end hooks, where the step-interval save runs, and
    TensorBoard writes its events asynchronously: a run killed just after the save would resume past a step whose
    loss never reached disk, leaving a hole in its curves. The loop logs the same values at the same step again
    afterwards, which TensorBoard shows as one point.
    """
    compat.log_step_metrics_now(trainer)
    for logger in trainer.loggers:
        logger.save()
        flush = getattr(logger.experiment, "flush", None)  # TensorBoard's SummaryWriter
        if callable(flush):
            flush()


class ExactResume(Callback):
    """What Lightning leaves out of an exact resume: the global RNG states, and the data position in one case.

    RNG: torch, CUDA, numpy and python states (dropout draws from them) are saved in every checkpoint and set
    again at the first training batch after loading, not at load time, so that nothing Lightning does while
    setting up (the sanity check, building iterators) shifts them.

    Data: Lightning restores a stateful train loader only if it builds the loader after loading the checkpoint,
    but `trainer.estimated_stepping_batches` (the schedule's length, asked for in configure_optimizers) builds it
    before; the saved position is then dropped and the epoch restarts from its first batch. Here the position is
    applied at train start and the fetcher's iterator rebuilt from it.
    """

    def __init__(self) -> None:
        self._pending_rng: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = compat.collect_rng_states()
        if "numpy" in states:  # numpy arrays would make the checkpoint unloadable with torch.load(weights_only=True)
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss]
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = state_dict.get("rng")
        if self._pending_rng is not None and "numpy" in self._pending_rng:
            kind, keys, pos, has_gauss, gauss = self._pending_rng["numpy"]
            self._pending_rng["numpy"] = (kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        compat.restore_train_loader_position(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._pending_rng is not None:
            if not torch.cuda.is_available():
                self._pending_rng.pop("torch.cuda", None)
            compat.set_rng_states(self._pending_rng)
            self._pending_rng = None


def checkpoint_files(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
