"""RunGuard: stop cleanly on SIGTERM / Ctrl-C at the next optimizer step, and stop at once on a non-finite loss."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback

from lyric_lm.errors import LyricLMError, RunStopped
from lyric_lm.run.checkpoints import LAST, LyricCheckpoint

log = logging.getLogger(__name__)


class RunGuard(Callback):
    """Signals and non-finite losses.

    SIGTERM (a scheduler's preemption, `kill`) or SIGINT (Ctrl-C) sets a flag; at the next optimizer-step
    boundary the guard writes `last.ckpt` and asks the Trainer to stop, so the saved state is a whole step and
    resumes exactly. Nothing runs after the stop: no validation (Lightning validates when a run stops early, for
    early stopping) and so no sample songs; the pipeline then raises RunStopped (exit 143 / 130). A second Ctrl-C
    stops at once, without saving. SIGUSR1 is left to Lightning (SLURM auto-requeue).

    A non-finite loss raises before its backward pass, so no NaN reaches the weights or any checkpoint.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, ckpt_dir: Path):
        self.ckpt_dir = Path(ckpt_dir)
        self.received: str | None = None  # the signal's name once one arrived
        self.saved: Path | None = None  # the last.ckpt written on that signal
        self._previous: dict[int, object] = {}
        self._step_at_start = 0

    def _handle(self, signum, frame) -> None:
        if self.received == "SIGINT" and signum == signal.SIGINT:  # Ctrl-C twice: do not wait for the step to end
            last = self.ckpt_dir / LAST
            kept = f"{last} holds the last saved step" if last.is_file() else "no checkpoint was written"
            raise RunStopped(f"SIGINT twice: stopped at once, without saving; {kept}", signum)
        self.received = signal.Signals(signum).name
        print(f"\n{self.received} received: saving last.ckpt at the end of this optimizer step ...", file=sys.stderr)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        # After the Trainer registered its own SIGTERM handler, which would exit at the end of the epoch or
        # in the middle of a validation, without a checkpoint.
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        self._step_at_start = trainer.global_step

    def on_before_backward(self, trainer: L.Trainer, pl_module, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).all():
            value = loss.detach().float().item()
            last = self.ckpt_dir / LAST
            kept = f"the last good checkpoint {last} is untouched" if last.is_file() else "no checkpoint was written"
            raise LyricLMError(
                f"training loss became {value} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"stopped before it reached the weights and {kept}. Lower optim.lr, lengthen the warmup "
                "(optim.warmup_steps) or keep trainer.gradient_clip_val, then resume or restart"
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.received is None or self.saved is not None or trainer.global_step == self._step_at_start:
            return  # no signal, already handled, or mid-way through gradient accumulation
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, LyricCheckpoint):
            self.saved = ckpt.save_last_now(trainer)
        else:
            self.saved = self.ckpt_dir / LAST
            trainer.save_checkpoint(self.saved, weights_only=False)
        trainer.should_stop = True
        trainer.limit_val_batches = 0  # turns validation off (Trainer.enable_validation), so nothing runs after this
        log.info(f"{self.received}: saved {self.saved} at step {trainer.global_step}; stopping")

    def stopped(self, run_dir: Path) -> RunStopped | None:
        """After fit: the RunStopped to raise if a signal stopped the run, saying what was saved and how to resume.

        None when no signal came, or when it came after the last step (the run then ends as usual)."""
        if self.received is None or self.saved is None:
            return None
        message = f"{self.received}: saved {self.saved}; resume with:\n  {resume_command(run_dir)}"
        return RunStopped(message, signal.Signals[self.received].value)


def resume_command(run_dir: Path) -> str:
    """The command line that continues this run: the same overrides plus `resume=auto run_dir=<run_dir>`."""
    overrides: list[str] = []
    if HydraConfig.initialized():
        drop = ("resume=", "run_dir=", "ckpt_path=", "hydra.run.dir=")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(drop)]
    args = [*overrides, "resume=auto", f"run_dir={run_dir}"]
    return "python train.py " + " ".join(shlex.quote(a) for a in args)
