"""The project's own Lightning callbacks: sample lyrics at each validation, to TensorBoard and <run>/samples/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from lyric_lm.songs.form_sampling import Form, form_summary
from lyric_lm.songs.sampling import Sampling, generate_songs, read_prompts
from lyric_lm.tokenizer import load_tokenizer


class SampleLyrics(L.Callback):
    """At the end of each validation, write songs from fixed prompts and a fixed seed, so runs compare by ear.

    The text goes to every logger that takes text (TensorBoard's TEXT tab, tag `samples`, one entry per step)
    and to `dirpath/step_XXXXXX.md`. Sampling restores the RNG state, so it does not change the training itself.

    Args:
        prompts: the start of each song (after the end-of-text token that precedes every song); "" is a free song.
        dirpath: folder for the markdown files; None writes none.
        sampling: the generate.py settings (seed, max_new_tokens, temperature, top_k, top_p, ...), and its form
            settings (rhyme_scheme, syllables, ...: form_sampling.Form), off unless one is given.
    """

    def __init__(self, prompts: Sequence[str] = ("",), dirpath: str | None = None, **sampling):
        self.prompts = read_prompts(list(prompts))  # a literal \n typed on the command line is a line break
        self.dirpath = Path(dirpath) if dirpath else None
        self.sampling = Sampling.from_config(sampling)
        self.form = Form.from_config(sampling)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is None:
            model_cfg = pl_module.hparams["model"]
            tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
        records = generate_songs(pl_module.model, tokenizer, self.prompts, self.sampling, form=self.form)
        step = trainer.global_step
        text = samples_markdown(records, step, trainer.current_epoch)
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_text"):  # TensorBoard's SummaryWriter
                logger.experiment.add_text("samples", text, global_step=step)
        if self.dirpath is not None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            (self.dirpath / f"step_{step:06d}.md").write_text(text, encoding="utf-8")


def samples_markdown(records: Sequence[dict], step: int, epoch: int) -> str:
    """Markdown with one fenced block per song, so line breaks survive in TensorBoard and on disk."""
    parts = [f"## Samples at step {step} (epoch {epoch})\n"]
    for rec in records:
        end = "" if rec["ended"] else f", cut at {rec['max_new_tokens']} tokens"
        if "form_measured" in rec:
            end += ", " + form_summary(rec["form_measured"])
        parts.append(f"**prompt {rec['prompt']!r}, seed {rec['prompt_seed']}{end}**\n\n```text\n{rec['text']}\n```\n")
    return "\n".join(parts)
