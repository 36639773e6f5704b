"""How a run went, told as it goes and at its end: each validation's metrics in train.log, the best of them, and
the closing lines (where the files are, what to run next)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L

from lyric_lm.console import FILE_ONLY

log = logging.getLogger(__name__)


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


def report_lines(
    trainer: L.Trainer, out: Path, report: RunReport, tokens_per_s: float | None, wall_s: float, exported: Path | None
) -> list[str]:
    """The end of a run in a few lines: how it went, where its files are, and what to run next."""
    speed = f", {tokens_per_s:,.0f} tokens/s" if tokens_per_s else ""
    lines = [f"finished in {wall_s / 60:.1f} min: {trainer.global_step} optimizer steps{speed}"]
    if report.best is not None:
        loss, ppl, step = report.best
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
