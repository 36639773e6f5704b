"""Sampling songs: load a model (checkpoint, exported directory or hub id), build prompts, generate, save JSONL."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from lyric_lm.data.conditioning import with_header
from lyric_lm.errors import LyricLMError
from lyric_lm.hub import resolve_pretrained
from lyric_lm.safe_files import atomic_write
from lyric_lm.tokenizer import load_tokenizer

# Header fields a prompt may be conditioned on, in the order the lyrics format writes them (data/reading.py).
HEADER_FIELDS = ("title", "artist", "genre")


@dataclass(frozen=True)
class Sampling:
    """How songs are sampled; checked at construction so a bad value fails before any model is loaded."""

    num_samples: int = 1  # songs per prompt
    max_new_tokens: int = 256  # generation stops here or at EOS (end of song), whichever comes first
    min_new_tokens: int = 0  # EOS is forbidden before this many new tokens
    temperature: float = 1.0  # < 1 sharper, > 1 flatter distribution
    top_k: int = 50  # sample among the k most likely tokens; 0 disables
    top_p: float = 0.95  # nucleus: the smallest set of tokens with this much probability; 1.0 disables
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the text; 1.0 disables
    no_repeat_ngram_size: int = 0  # > 0 forbids repeating any n-gram of this size; 0 disables
    seed: int = 0  # same seed, settings and model: the same songs on CPU

    def __post_init__(self) -> None:
        # Types first (a command line gives num_samples=1.5 or seed=x as they are), so the range checks can compare.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise LyricLMError(f"{f.name}={value} is not a whole number; give an integer such as {f.default}")
            if isinstance(f.default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise LyricLMError(f"{f.name}={value} is not a number; give one such as {f.default}")
        checks = [
            ("num_samples", self.num_samples >= 1, "at least 1"),
            ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
            ("min_new_tokens", 0 <= self.min_new_tokens <= self.max_new_tokens, "between 0 and max_new_tokens"),
            ("temperature", self.temperature > 0, "greater than 0"),
            ("top_k", self.top_k >= 0, "0 (off) or more"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "greater than 0 (1.0 is off)"),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0, "0 (off) or more"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise LyricLMError(f"{name}={getattr(self, name)} is out of range; {name} must be {expected}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Sampling:
        """The sampling settings among a config's keys (other keys are ignored)."""
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg and cfg[k] is not None})

    def generation_config(self, tokenizer) -> GenerationConfig:
        return GenerationConfig(
            do_sample=True,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            num_return_sequences=self.num_samples,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )


def load_for_generation(
    ckpt_path: str | None = None, model_dir: str | None = None, tokenizer: str | None = None
) -> tuple[PreTrainedModel, Any]:
    """(model in eval mode, tokenizer) from a Lightning checkpoint or a save_pretrained directory / hub id."""
    if bool(ckpt_path) == bool(model_dir):
        raise LyricLMError(
            "give exactly one of ckpt_path=<run>/checkpoints/last.ckpt or model_dir=<run>/hf_model (or a hub id)"
        )
    if ckpt_path:
        from lyric_lm.export import hf_model_of, load_checkpoint

        module = load_checkpoint(ckpt_path)
        model_cfg = module.hparams["model"]
        tok = load_tokenizer(model_cfg["name_or_path"], tokenizer or model_cfg.get("tokenizer"))
        model = hf_model_of(module)
    else:
        path = Path(model_dir).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise LyricLMError(
                f"model_dir={model_dir} holds no model (no config.json); give a directory written by "
                "save_pretrained (e.g. <run>/hf_model, or export.py ckpt_path=... to make one) or a hub id"
            )
        if path.is_file():
            raise LyricLMError(
                f"model_dir={model_dir} is a file; give its folder, or pass a Lightning checkpoint as ckpt_path="
            )
        source, kwargs = resolve_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tok = load_tokenizer(tokenizer or source)
    return model.eval(), tok


def read_prompts(prompt: str | Sequence[str] | None = None, prompt_file: str | None = None) -> list[str]:
    """Prompts from `prompt` (one or a list) and/or `prompt_file` (one prompt per non-empty line).

    A literal `\\n` in a prompt is a line break (a command line cannot easily hold one). No prompt at all gives one
    empty prompt: the model starts a song from nothing.
    """
    prompts = [str(p) for p in ([prompt] if isinstance(prompt, (str, int, float)) else list(prompt or []))]
    if prompt_file:
        path = Path(prompt_file).expanduser()
        if not path.is_file():
            raise LyricLMError(f"prompt_file={prompt_file} does not exist; give a text file with one prompt per line")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise LyricLMError(f"prompt_file={prompt_file} is empty; write one prompt per line")
        prompts += lines
    return [p.replace("\\n", "\n") for p in prompts] or [""]


def header_order(ckpt_path: str | None, model_dir: str | None) -> list[str]:
    """Header fields in the order the model was trained with (its run's `data.condition_on`, when the run dir is
    beside the checkpoint or the exported `<run>/hf_model`), then the rest in the lyrics format's order."""
    from lyric_lm.export import run_config_of

    trained: list[str] = []
    run_cfg = None
    if ckpt_path and Path(ckpt_path).expanduser().is_file():
        run_cfg = run_config_of(ckpt_path)
    elif model_dir and (Path(model_dir).expanduser().parent / "config_resolved.yaml").is_file():
        run_cfg = OmegaConf.to_container(OmegaConf.load(Path(model_dir).expanduser().parent / "config_resolved.yaml"))
    if run_cfg:
        trained = [f for f in (run_cfg.get("data") or {}).get("condition_on") or [] if f in HEADER_FIELDS]
    return trained + [f for f in HEADER_FIELDS if f not in trained]


def song_prompt(prompt: str, header: Mapping[str, str | None]) -> str:
    """The text the model continues: the conditioning header (training's format, fields in `header`'s order), then
    the user's prompt."""
    return with_header(prompt, header, list(header))


def context_length(model: PreTrainedModel) -> int | None:
    """Tokens the model can see at once, prompt and new tokens together (GPT-2: n_positions); None if unknown."""
    value = getattr(model.config, "max_position_embeddings", None)  # GPT-2's config maps this name to n_positions
    return value if isinstance(value, int) else None


def new_token_limit(prompt: str, prompt_tokens: int, max_new_tokens: int, context: int | None) -> int:
    """`max_new_tokens`, cut to what fits in the context after the prompt (GPT-2 has no positions past it)."""
    if context is None:
        return max_new_tokens
    if prompt_tokens >= context:
        shown = prompt if len(prompt) <= 40 else prompt[:40] + "..."
        raise LyricLMError(
            f"prompt {shown!r} is {prompt_tokens} tokens with its header, and the model's context is {context} "
            "tokens; shorten the prompt"
        )
    return min(max_new_tokens, context - prompt_tokens)


@torch.no_grad()
def generate_songs(
    model: PreTrainedModel,
    tokenizer,
    prompts: Sequence[str],
    sampling: Sampling,
    header: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """`sampling.num_samples` songs per prompt; one record each with the prompt, the text and every setting.

    Each prompt is sampled from its own seed (`seed + prompt index`), so a song does not change when other
    prompts are added. The global RNG is restored afterwards, so sampling inside training changes nothing else.
    A song ends at max_new_tokens or where the model's context does, whichever comes first (a note says so).
    """
    header = {k: v for k, v in (header or {}).items() if v}
    device = next(model.parameters()).device
    context = context_length(model)
    # Every prompt tokenized and checked before any is sampled: one that fills the context fails at once.
    jobs = []  # (prompt, text the model continues, its token ids, new tokens it may have)
    for prompt in prompts:
        text_in = song_prompt(prompt, header)
        # Songs follow an EOS in training (they are packed song, EOS, song, ...), so EOS means "a new song".
        ids = [tokenizer.eos_token_id] + tokenizer(text_in, add_special_tokens=False)["input_ids"]
        jobs.append((prompt, text_in, ids, new_token_limit(prompt, len(ids), sampling.max_new_tokens, context)))
    capped = sorted({limit for *_, limit in jobs if limit < sampling.max_new_tokens})
    if capped:
        at = str(capped[0]) if len(capped) == 1 else f"{capped[0]}-{capped[-1]} (by prompt length)"
        print(
            f"note: max_new_tokens={sampling.max_new_tokens} capped at {at}: the model's context is {context} tokens",
            file=sys.stderr,
        )
    records = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for i, (prompt, text_in, ids, limit) in enumerate(jobs):
            input_ids = torch.tensor([ids], device=device)  # (1, T)
            fitted = replace(sampling, max_new_tokens=limit, min_new_tokens=min(sampling.min_new_tokens, limit))
            torch.manual_seed(sampling.seed + i)
            out = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=fitted.generation_config(tokenizer),
            )  # (num_samples, T + new)
            for j, seq in enumerate(out):
                new = seq[len(ids) :].tolist()
                ended = tokenizer.eos_token_id in new
                if ended:
                    new = new[: new.index(tokenizer.eos_token_id)]
                completion = tokenizer.decode(new, skip_special_tokens=True)
                records.append(
                    {
                        "prompt": prompt,
                        "header": header,
                        "sample": j,
                        "text": text_in + completion,
                        "completion": completion,
                        "new_tokens": len(new),
                        "ended": ended,
                        **asdict(fitted),  # the settings as sampled: max_new_tokens capped to the context
                        "prompt_seed": sampling.seed + i,
                    }
                )
    return records


def format_songs(records: Sequence[Mapping[str, Any]]) -> str:
    """Songs for a terminal: a rule and a title line per song, then the text."""
    blocks = []
    for n, rec in enumerate(records, 1):
        end = "" if rec["ended"] else f" (cut at max_new_tokens={rec['max_new_tokens']})"
        blocks.append(f"===== song {n}/{len(records)}: prompt {rec['prompt']!r}, sample {rec['sample'] + 1}{end}\n")
        blocks.append(rec["text"].strip() + "\n\n")
    return "".join(blocks)


def check_output_file(output_file: str | Path) -> None:
    """Fail before sampling, not after, when `output_file` cannot be written: a folder, or no writable folder."""
    path = Path(output_file).expanduser()
    if path.is_dir():
        raise LyricLMError(f"output_file={output_file} is a directory; give a file name such as {path}/songs.jsonl")
    folder = path.parent
    while not folder.exists():  # the nearest folder that exists is where the missing ones will be made
        folder = folder.parent
    if not folder.is_dir():
        raise LyricLMError(f"output_file={output_file}: {folder} is a file, not a folder; give another output_file=")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LyricLMError(f"output_file={output_file}: {folder} is not writable; give another output_file=")


def write_jsonl(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One JSON object per line; written whole or not at all (safe_files.atomic_write)."""
    path = Path(path).expanduser()
    with atomic_write(path, "free some space or write the songs to another folder") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    return path


def generate(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """generate.py: check the settings, load the model, sample, print the songs, write JSONL if asked."""
    hf_logging.disable_progress_bar()  # the songs are the output; no loading bars around them
    sampling = Sampling.from_config(cfg)  # before loading anything: a bad value fails at once
    prompts = read_prompts(cfg.get("prompt"), cfg.get("prompt_file"))
    if cfg.get("output_file"):
        check_output_file(cfg["output_file"])
    order = header_order(cfg.get("ckpt_path"), cfg.get("model_dir"))
    header = {field: cfg.get(field) for field in order}
    model, tokenizer = load_for_generation(cfg.get("ckpt_path"), cfg.get("model_dir"), cfg.get("tokenizer"))
    records = generate_songs(model, tokenizer, prompts, sampling, header)
    print(format_songs(records), end="", flush=True)
    if cfg.get("output_file"):
        print(f"wrote {len(records)} songs to {write_jsonl(records, cfg['output_file'])}")
    return records
