"""Export a Lightning checkpoint as a Hugging Face model folder: weights, tokenizer, generation config, model card."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lyric_lm.console import quiet_libraries
from lyric_lm.errors import LyricLMError
from lyric_lm.run.files import give_default_modes, temp_path_beside, user_write_errors
from lyric_lm.songs.loading import global_step_of, hf_model_of, load_checkpoint, run_config_of, run_dir_of
from lyric_lm.songs.sampling import Sampling, context_length
from lyric_lm.tokenizer import load_tokenizer

# Written into every export folder: the names of the files that export wrote, which the next export replaces.
EXPORT_LIST = ".lyric_lm_export.json"


def export_checkpoint(
    ckpt_path: str | Path,
    output_dir: str | Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    val_loss: float | None = None,
) -> Path:
    """Write model, tokenizer, GenerationConfig (save_pretrained) and README.md to `output_dir` (<run>/hf_model).

    Built in a temporary folder beside the target and moved into place at the end, so a failure never leaves a
    half-written model behind (nor destroys a previous export). The folder gets a list of the files written
    (EXPORT_LIST): a later export replaces those and keeps whatever else the user put beside them.
    """
    if not ckpt_path:
        raise LyricLMError("no checkpoint given; set ckpt_path=<run>/checkpoints/last.ckpt")
    out = Path(output_dir).expanduser() if output_dir else run_dir_of(ckpt_path) / "hf_model"
    previous = previous_export(out)  # before the slow part: a folder that is not ours fails at once
    module = load_checkpoint(ckpt_path)
    run_config = run_config if run_config is not None else run_config_of(ckpt_path)
    model_cfg = module.hparams["model"]
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    model = hf_model_of(module)
    # What `transformers.pipeline("text-generation")` and model.generate() use when given nothing else; at most half
    # the context, so a prompt fits before it (GPT-2 has no position past n_positions).
    context = context_length(model)
    max_new = min(Sampling.max_new_tokens, context // 2) if context else Sampling.max_new_tokens
    model.generation_config = Sampling(max_new_tokens=max_new).generation_config(tokenizer)

    fix = f"free some space or give another output_dir= (now {out})"
    tmp = temp_path_beside(out)
    with user_write_errors(out.parent, fix):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # as mkdir makes folders (0o777 less the umask), not 0o700 as tempfile.mkdtemp would
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "README.md").write_text(
                model_card(module.hparams, run_config, global_step_of(ckpt_path), val_loss, Path(ckpt_path).name),
                encoding="utf-8",
            )
            written = sorted(p.name for p in tmp.iterdir())
            (tmp / EXPORT_LIST).write_text(json.dumps({"files": written}, indent=1) + "\n", encoding="utf-8")
            give_default_modes(tmp)
            move_into(tmp, out, previous)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # ours alone; empty after a move
    return out


def previous_export(out: Path) -> list[str]:
    """The names an earlier export wrote into `out` (to be replaced); refuses a folder that is not an export."""
    if out.exists() and not out.is_dir():
        raise LyricLMError(f"output_dir={out} is a file; give a folder for the exported model")
    listing = out / EXPORT_LIST
    if listing.is_file():
        try:
            names = json.loads(listing.read_text(encoding="utf-8")).get("files")
        except (ValueError, AttributeError):
            names = None
        if not isinstance(names, list):
            raise LyricLMError(f"{listing} is damaged; delete the old export yourself or give a new output_dir=")
        # Plain names inside the folder only: an edited list must not reach other files.
        return [n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")]
    if out.is_dir() and (old := export_before_lists(out)):
        return old
    if out.is_dir() and any(out.iterdir()):
        raise LyricLMError(
            f"output_dir={out} holds files that export.py did not write (no {EXPORT_LIST}); "
            "give a new or empty folder with output_dir="
        )
    return []


# What an export wrote before it listed its files (lyric_lm 0.1.0): save_pretrained's files and our model card.
OLD_EXPORT_FILES = re.compile(
    r"(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|added_tokens|vocab)\.json|merges\.txt"
    r"|README\.md|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|pytorch_model\.bin"
)


def export_before_lists(out: Path) -> list[str]:
    """The files of an export written before EXPORT_LIST existed, recognised by all its names and its model card
    (a resumed older run re-exports into its hf_model/); [] for anything else, which is then not ours."""
    names = [p.name for p in out.iterdir()]
    card = out / "README.md"
    if not names or not all(OLD_EXPORT_FILES.fullmatch(n) and (out / n).is_file() for n in names):
        return []
    if not card.is_file() or "(lyric_lm)" not in card.read_text(encoding="utf-8", errors="replace")[:2000]:
        return []
    return names


def move_into(tmp: Path, out: Path, previous: list[str]) -> None:
    """Put the new export (the entries of `tmp`) in `out` in place of the `previous` one; everything else stays.

    A new folder is one rename. In an existing one the previous export's entries are moved aside first and moved
    back if anything fails, so a failure leaves the previous export as it was.
    """
    if not out.exists():
        tmp.rename(out)
        return
    new = sorted((p.name for p in tmp.iterdir()), key=lambda name: name == EXPORT_LIST)  # the list last: marks it whole
    clash = next((n for n in new if (out / n).exists() and n not in previous and n != EXPORT_LIST), None)
    if clash is not None:
        raise LyricLMError(f"{out / clash} is not from the earlier export; move it away or give a new output_dir=")
    aside = temp_path_beside(out)
    aside.mkdir()
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for name in [*previous, EXPORT_LIST]:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, aside / name)
                moved_aside.append(name)
        for name in new:
            os.replace(tmp / name, out / name)
            moved_in.append(name)
    except BaseException:
        for name in moved_in:
            os.replace(out / name, tmp / name)
        for name in moved_aside:
            os.replace(aside / name, out / name)
        aside.rmdir()
        raise
    shutil.rmtree(aside)  # the previous export's files, now replaced


def model_card(
    hparams: Mapping[str, Any],
    run_config: Mapping[str, Any] | None,
    global_step: int | None,
    val_loss: float | None,
    ckpt_name: str,
) -> str:
    """A short README.md: what the model is, the data and training settings it came from, and how to use it."""
    model = dict(hparams["model"])
    hf = hparams.get("hf_config") or {}
    shape = ", ".join(f"{k}={hf[k]}" for k in ("n_layer", "n_embd", "n_head", "n_positions") if k in hf)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [lyric_lm, lyrics, causal-lm]",
        "---",
        "",
        "# Song-lyrics language model (lyric_lm)",
        "",
        f"Fine-tuned with lyric_lm from `{model['name_or_path']}`"
        + (" (random initialisation)" if model.get("from_scratch") else "")
        + (f"; architecture {shape}" if shape else "")
        + f". Exported from checkpoint `{ckpt_name}`"
        + (f" at optimizer step {global_step}" if global_step is not None else "")
        + (f"; validation loss {val_loss:.4f} (perplexity {math.exp(val_loss):.1f})" if val_loss else "")
        + ".",
        "",
        "## Data and training settings",
        "",
    ]
    sections = {"optim": hparams.get("optim")}
    if run_config:
        sections = {
            "data": run_config.get("data"),
            "optim": run_config.get("optim"),
            "trainer": {
                k: v
                for k, v in (run_config.get("trainer") or {}).items()
                if k in ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "precision")
            },
            "seed": run_config.get("seed"),
        }
        if (run_config.get("data") or {}).get("path") is None:
            sections["data"] = {**run_config["data"], "path": "builtin sample of original songs"}
    for name, value in sections.items():
        if value is not None:
            lines.append(f"- **{name}**: `{json.dumps(value, default=str)}`")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        'generate = pipeline("text-generation", model="path/to/hf_model")',
        'print(generate("<|endoftext|>title: Night Train\\n\\n", max_new_tokens=120)[0]["generated_text"])',
        "```",
        "",
        "Songs were trained after an end-of-text token, with optional `title:`, `artist:`, `genre:` header lines and a",
        "blank line before the lyrics; a prompt in that form asks for a song of that kind. Or use lyric_lm's",
        "`python generate.py model_dir=path/to/hf_model genre=folk`.",
        "",
    ]
    return "\n".join(lines)


def export_best(checkpoint_callback, ckpt_dir: Path, output_dir: Path, run_config: Mapping[str, Any]) -> Path:
    """End of training: export the best checkpoint by the monitored metric, or last.ckpt when there is none."""
    best = getattr(checkpoint_callback, "best_model_path", "") or ""
    score = getattr(checkpoint_callback, "best_model_score", None)
    if best and Path(best).is_file():
        return export_checkpoint(best, output_dir, run_config, float(score) if score is not None else None)
    return export_checkpoint(ckpt_dir / "last.ckpt", output_dir, run_config)


def export(cfg: Mapping[str, Any]) -> Path:
    """export.py: export `cfg.ckpt_path` to `cfg.output_dir` (default <run>/hf_model) and say where it went."""
    quiet_libraries()
    out = export_checkpoint(cfg.get("ckpt_path"), cfg.get("output_dir"))
    print(f"exported {cfg.get('ckpt_path')} to {out}")
    return out
