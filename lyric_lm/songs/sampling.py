"""Sampling songs: prompts and header, the sampling settings, generation with progress, JSONL; and generate.py.

Songs asked to keep a form (rhyme scheme, syllables, stanzas, structure) are written by songs/form_sampling.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedModel, TextStreamer
from transformers.generation import BaseStreamer

from lyric_lm.console import progress_bar, quiet_libraries
from lyric_lm.data.conditioning import with_header
from lyric_lm.errors import LyricLMError
from lyric_lm.run.files import atomic_write, folder_to_write
from lyric_lm.songs.form import is_lyric_line
from lyric_lm.songs.form_sampling import Form, measured_form, write_song
from lyric_lm.songs.loading import load_for_generation, run_config_near
from lyric_lm.tokenizer import song_ids

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
    trained: list[str] = []
    run_cfg = run_config_near(ckpt_path, model_dir)
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


class SongStream(TextStreamer):
    """transformers' TextStreamer writing a song's new text to `out` instead of print(); whole words at a time."""

    def __init__(self, tokenizer, out: TextIO) -> None:
        # The same decoding as the record's completion, so the streamed text is the text saved.
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out = out

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.out.write(text)
            self.out.flush()


class StepCounter(BaseStreamer):
    """Moves a bar one step per token the model writes (for songs sampled side by side, which cannot be streamed)."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:  # (num_samples,): one new token per song
            self.bar.update(1)
        self.prompt_seen = True  # generate() first pushes the prompt, (1, T)

    def end(self) -> None:
        """Nothing to flush: SongProgress.finish moves the bar to the prompt's end (its songs may end early)."""


class SongProgress:
    """What a user sees while songs are sampled; generate_songs calls it around each prompt's `model.generate`.

    - `stream=True` (generate.py on a terminal, one song per prompt): each song's heading, then its text as the model
      writes it. A streamer takes one sequence at a time, and sampling num_samples > 1 songs one by one rather than
      side by side would change the songs a seed gives: those are shown whole, with a bar.
    - `bar=True`: a bar of tokens written per song, on stderr (progress_bar).
    - `out`: each prompt's songs written whole as they complete (format_songs' format, numbered across prompts).
    The default shows nothing: sampling inside training stays silent.

    A song that keeps a form is written line by line, one song at a time: `begin` and `write` stream it line by line
    (any num_samples), and its bar counts lines.
    """

    def __init__(self, out: TextIO | None = None, stream: bool = False, bar: bool = False) -> None:
        self.out = out
        self.stream = stream and out is not None
        self.show_bar = bar and not self.stream  # a bar redrawn under streamed text would tear it
        self.bar: tqdm | None = None
        self.total_songs = 0
        self.songs = 0  # shown so far
        self.planned_steps = 0  # tokens per song of the prompts begun so far: the bar's position when they end

    def start(self, songs: int, steps: int, unit: str = "token") -> None:
        self.total_songs = songs
        if self.show_bar:
            self.bar = progress_bar(total=steps, desc=f"sampling {songs} songs", unit=unit)

    def streamer(self, tokenizer, prompt: str, text_in: str, steps: int) -> BaseStreamer | None:
        """The streamer for one prompt's `model.generate`; a streamed song's heading and prompt are written now."""
        self.planned_steps += steps
        if self.stream:
            # The heading cannot say yet whether the song will be cut: finish() adds that line after the text.
            self.out.write(song_heading(self.songs + 1, self.total_songs, prompt, 0) + text_in)
            self.out.flush()
            return SongStream(tokenizer, self.out)
        return StepCounter(self.bar) if self.bar is not None else None

    def begin(self, prompt: str, text_in: str, sample: int, steps: int) -> None:
        """A song written piece by piece (`write`) begins: its heading and prompt, when streamed."""
        self.planned_steps += steps
        if self.stream:
            self.out.write(song_heading(self.songs + 1, self.total_songs, prompt, sample) + text_in)
            self.out.flush()

    def write(self, text: str) -> None:
        """The next piece of a song begun with `begin` (a line, a tag, a stanza break): shown, or a step of the bar."""
        if self.stream:
            self.out.write(text)
            self.out.flush()
        elif self.bar is not None:
            self.bar.update(sum(map(is_lyric_line, text.splitlines())))  # lines, not tags or stanza breaks

    def finish(self, records: Sequence[Mapping[str, Any]]) -> None:
        """One prompt's songs are sampled: show them (or end the streamed one), move the bar to the prompt's end."""
        if self.bar is not None:
            self.bar.update(self.planned_steps - self.bar.n)
        if self.stream:
            [rec] = records
            cut = "" if rec["ended"] else f"(cut at max_new_tokens={rec['max_new_tokens']})\n"
            self.out.write(("" if rec["text"].endswith("\n") else "\n") + cut + "\n")
            self.out.flush()
        elif self.out is not None:
            # tqdm.write lifts the bar out of the way and draws it again below the songs.
            tqdm.write(format_songs(records, self.songs + 1, self.total_songs), file=self.out, end="")
            self.out.flush()
        self.songs += len(records)

    def close(self) -> None:
        """Erase the bar (also when sampling fails or is interrupted: no half bar above the traceback)."""
        if self.bar is not None:
            self.bar.close()


@torch.no_grad()
def generate_songs(
    model: PreTrainedModel,
    tokenizer,
    prompts: Sequence[str],
    sampling: Sampling,
    header: Mapping[str, str | None] | None = None,
    progress: SongProgress | None = None,
    form: Form | None = None,
) -> list[dict[str, Any]]:
    """`sampling.num_samples` songs per prompt; one record each with the prompt, the text and every setting.

    Each prompt is sampled from its own seed (`seed + prompt index`), so a song does not change when other
    prompts are added. The global RNG is restored afterwards, so sampling inside training changes nothing else.
    A song ends at max_new_tokens or where the model's context does, whichever comes first (a note says so).
    `progress` shows the songs as they are written (SongProgress); streaming changes no sampling.

    With a `form` that is active, each song keeps it (form_sampling.write_song): it is as long as its form asks,
    max_new_tokens and min_new_tokens do not apply, and its record adds `form` (the form asked for) and
    `form_measured` (form_sampling.measured_form of its text).
    """
    progress = progress or SongProgress()
    if form is not None and form.active:
        return form_songs(model, tokenizer, prompts, sampling, form, header, progress)
    header = {k: v for k, v in (header or {}).items() if v}
    device = next(model.parameters()).device
    context = context_length(model)
    # Every prompt tokenized and checked before any is sampled: one that fills the context fails at once.
    jobs = []  # (prompt, text the model continues, its token ids, new tokens it may have)
    for prompt in prompts:
        text_in = song_prompt(prompt, header)
        ids = song_ids(tokenizer, text_in)
        jobs.append((prompt, text_in, ids, new_token_limit(prompt, len(ids), sampling.max_new_tokens, context)))
    capped = sorted({limit for *_, limit in jobs if limit < sampling.max_new_tokens})
    if capped:
        at = str(capped[0]) if len(capped) == 1 else f"{capped[0]}-{capped[-1]} (by prompt length)"
        print(
            f"note: max_new_tokens={sampling.max_new_tokens} capped at {at}: the model's context is {context} tokens",
            file=sys.stderr,
        )
    records = []
    progress.start(len(jobs) * sampling.num_samples, sum(limit for *_, limit in jobs))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), closing(progress):
        for i, (prompt, text_in, ids, limit) in enumerate(jobs):
            input_ids = torch.tensor([ids], device=device)  # (1, T)
            fitted = replace(sampling, max_new_tokens=limit, min_new_tokens=min(sampling.min_new_tokens, limit))
            torch.manual_seed(sampling.seed + i)
            out = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=fitted.generation_config(tokenizer),
                streamer=progress.streamer(tokenizer, prompt, text_in, limit),
            )  # (num_samples, T + new)
            first = len(records)
            for j, seq in enumerate(out):
                new = seq[len(ids) :].tolist()
                ended = tokenizer.eos_token_id in new
                if ended:
                    new = new[: new.index(tokenizer.eos_token_id)]
                completion = tokenizer.decode(new, skip_special_tokens=True)
                # The settings as sampled: max_new_tokens capped to the context.
                records.append(song_record(prompt, header, j, text_in, completion, len(new), ended, fitted, i))
            progress.finish(records[first:])
    return records


def song_record(
    prompt: str,
    header: Mapping[str, str],
    sample: int,
    text_in: str,
    completion: str,
    new_tokens: int,
    ended: bool,
    sampling: Sampling,
    prompt_index: int,
) -> dict[str, Any]:
    """One song's JSONL record: the prompt, header and sample, the text, and every sampling setting."""
    return {
        "prompt": prompt,
        "header": header,
        "sample": sample,
        "text": text_in + completion,
        "completion": completion,
        "new_tokens": new_tokens,
        "ended": ended,
        **asdict(sampling),
        "prompt_seed": sampling.seed + prompt_index,
    }


@torch.no_grad()
def form_songs(
    model: PreTrainedModel,
    tokenizer,
    prompts: Sequence[str],
    sampling: Sampling,
    form: Form,
    header: Mapping[str, str | None] | None,
    progress: SongProgress,
) -> list[dict[str, Any]]:
    """generate_songs for songs that keep a form: one song at a time, each line seeded from the prompt's seed, the
    sample and the line (form_sampling.line_seed)."""
    header = {k: v for k, v in (header or {}).items() if v}
    device = next(model.parameters()).device
    context = context_length(model)
    texts_in = [song_prompt(prompt, header) for prompt in prompts]
    for prompt, text_in in zip(prompts, texts_in, strict=True):  # every prompt checked before any is sampled
        ids = tokenizer(text_in, add_special_tokens=False)["input_ids"]
        new_token_limit(prompt, 1 + len(ids), sampling.max_new_tokens, context)
    lines = len(form.parts()) * form.lines_per_stanza()
    config = sampling.generation_config(tokenizer)
    records = []
    progress.start(len(prompts) * sampling.num_samples, len(prompts) * sampling.num_samples * lines, unit="line")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), closing(progress):
        for i, (prompt, text_in) in enumerate(zip(prompts, texts_in, strict=True)):
            for j in range(sampling.num_samples):
                progress.begin(prompt, text_in, j, lines)
                completion = write_song(model, tokenizer, text_in, form, config, sampling.seed + i, j, progress.write)
                new_tokens = len(tokenizer(completion, add_special_tokens=False)["input_ids"])
                record = song_record(prompt, header, j, text_in, completion, new_tokens, True, sampling, i)
                record.update(form=form.asked(), form_measured=measured_form(record["text"], form))
                records.append(record)
                progress.finish([record])
    return records


def song_heading(n: int, total: int, prompt: str, sample: int, cut_at: int | None = None) -> str:
    """`===== song 2/3: prompt 'Down by the river', sample 2 (cut at max_new_tokens=16)` and a line break."""
    end = "" if cut_at is None else f" (cut at max_new_tokens={cut_at})"
    return f"===== song {n}/{total}: prompt {prompt!r}, sample {sample + 1}{end}\n"


def format_songs(records: Sequence[Mapping[str, Any]], first: int = 1, total: int | None = None) -> str:
    """Songs for a terminal: a rule and a title line per song, then the text. `first` and `total` number songs
    printed a few at a time (song `first` of `total`)."""
    blocks = []
    for n, rec in enumerate(records, first):
        cut_at = None if rec["ended"] else rec["max_new_tokens"]
        blocks.append(song_heading(n, total or len(records), rec["prompt"], rec["sample"], cut_at))
        blocks.append(rec["text"].strip() + "\n\n")
    return "".join(blocks)


def check_output_file(output_file: str | Path) -> None:
    """Fail before sampling, not after, when `output_file` cannot be written: a folder, or no writable folder."""
    path = Path(output_file).expanduser()
    if path.is_dir():
        raise LyricLMError(f"output_file={output_file} is a directory; give a file name such as {path}/songs.jsonl")
    folder, writable = folder_to_write(path)
    if not folder.is_dir():
        raise LyricLMError(f"output_file={output_file}: {folder} is a file, not a folder; give another output_file=")
    if not writable:
        raise LyricLMError(f"output_file={output_file}: {folder} is not writable; give another output_file=")


def write_jsonl(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One JSON object per line; written whole or not at all (safe_files.atomic_write)."""
    path = Path(path).expanduser()
    with atomic_write(path, "free some space or write the songs to another folder") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    return path


def generate(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """generate.py: check the settings, load the model, sample and print the songs, write JSONL if asked.

    On a terminal a song sampled alone, or keeping a form (line by line), is streamed as it is written; otherwise
    each prompt's songs are printed whole as they complete, with a bar on stderr when that is a terminal. Piped
    output is the same songs in the same format, with nothing but whole songs.
    """
    quiet_libraries()
    sampling = Sampling.from_config(cfg)  # before loading anything: a bad value fails at once
    form = Form.from_config(cfg)
    prompts = read_prompts(cfg.get("prompt"), cfg.get("prompt_file"))
    if cfg.get("output_file"):
        check_output_file(cfg["output_file"])
    order = header_order(cfg.get("ckpt_path"), cfg.get("model_dir"))
    header = {field: cfg.get(field) for field in order}
    model, tokenizer = load_for_generation(cfg.get("ckpt_path"), cfg.get("model_dir"), cfg.get("tokenizer"))
    # A form song is written one song at a time, so it streams whatever num_samples is.
    stream = sys.stdout.isatty() and (sampling.num_samples == 1 or form.active)
    progress = SongProgress(sys.stdout, stream=stream, bar=not stream)
    records = generate_songs(model, tokenizer, prompts, sampling, header, progress, form)
    if cfg.get("output_file"):
        print(f"wrote {len(records)} songs to {write_jsonl(records, cfg['output_file'])}")
    return records
