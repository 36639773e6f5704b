"""The playground: a local web page (Gradio) to write songs with a trained model, compare checkpoints, keep songs."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from transformers.generation import BaseStreamer

from lyric_lm.errors import LyricLMError
from lyric_lm.run.checkpoints import checkpoint_files, read_checkpoint
from lyric_lm.run.files import folder_to_write
from lyric_lm.songs import HEADER_FIELDS, Sampling, SongProgress, generate_songs, header_order, load_for_generation
from lyric_lm.songs.form import line_syllables, rhyme_scheme, song_form, stanzas
from lyric_lm.songs.form_sampling import Form, form_summary

# Gradio posts usage statistics and asks for its latest version (api.gradio.app) unless this is "False"; it reads the
# variable when a page is built and launched. Set here, before the import, so no setting of the user's turns it on.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

try:
    import gradio as gr
except ImportError as err:  # the `app` extra is not installed: one line, as for any setting the user can fix
    raise LyricLMError("the playground needs Gradio; install it with: pip install -e '.[app]'") from err

# The sampling settings the page shows; the others (repetition_penalty, ...) stay as the command line sets them.
PAGE_SETTINGS = ("temperature", "top_k", "top_p", "max_new_tokens", "seed", "num_samples")
# The form settings the page shows (generate.py's, issue 20); `candidates` stays as the command line sets it.
PAGE_FORM = ("rhyme_scheme", "syllables", "syllable_tolerance", "stanzas", "structure")
MAX_SAMPLES = 4  # songs side by side on one screen; generate.py writes more
PANEL_OUTPUTS = 4 * MAX_SAMPLES  # a handler's outputs for a set of song panels: column, text, form, Keep button each
MODELS_IN_MEMORY = 4  # loaded models kept (two compared, the one written with, one more); GPT-2 124M is ~0.5 GB each
KEEP_FILE = "kept_songs.jsonl"
# One sampling at a time in this process: generate_songs seeds torch's process-wide random generator, so two songs
# sampled at once (two browser tabs) would take each other's random numbers and a seed would no longer give its songs.
SAMPLING_LOCK = threading.Lock()
# System fonts only: Gradio's default theme fetches its fonts from Google, a request to a third party on every visit.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model lists: what the page shows, and what load_for_generation gets."""

    label: str
    value: str  # a checkpoint file, an exported folder (save_pretrained) or a hub id


def run_checkpoints(run: Path) -> list[Path]:
    """`<run>/checkpoints/*.ckpt` in training order: step files by step (their names sort so), last.ckpt at the end."""
    return sorted(checkpoint_files(run / "checkpoints"), key=lambda p: p.name == "last.ckpt")


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint as its checkpoints record it (ModelCheckpoint's best_model_path), else last.ckpt."""
    files = run_checkpoints(run)
    if not files:
        raise LyricLMError(
            f"run_dir={run} has no checkpoints (no {run}/checkpoints/*.ckpt); give a training run's folder, "
            "or ckpt_path=<checkpoint> / model_dir=<exported folder or hub id>"
        )
    newest = max(files, key=lambda p: p.stat().st_mtime)  # last.ckpt, or the latest step file of a run still going
    try:
        state = read_checkpoint(newest, mmap=True).get("callbacks") or {}  # memory-mapped: no weights are read
    except LyricLMError:  # a damaged file: load_for_generation names it if it is picked
        state = {}
    recorded = [s["best_model_path"] for s in state.values() if isinstance(s, dict) and s.get("best_model_path")]
    for path in recorded:
        # The path is the one written at training time: look for the file by name, in case the run was moved.
        if (run / "checkpoints" / Path(path).name).is_file():
            return run / "checkpoints" / Path(path).name
    return run / "checkpoints" / "last.ckpt" if (run / "checkpoints" / "last.ckpt").is_file() else newest


def sweep_jobs(folder: Path) -> list[Path]:
    """The runs inside a sweep folder (`outputs/multirun/<date>/<time>/<job>/`), in job order."""
    jobs = [d for d in folder.iterdir() if d.is_dir() and (d / "checkpoints").is_dir()] if folder.is_dir() else []
    return sorted(jobs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def run_summary(run: Path) -> dict[str, Any]:
    """The run's result.json (status, overrides, val_loss), or {} when it has none."""
    try:
        return json.loads((run / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_choices(run: Path, prefix: str = "") -> list[ModelChoice]:
    """A run's checkpoints (the best first, marked), then its exported hf_model/ when there is one."""
    best = best_checkpoint(run)
    files = [best] + [f for f in run_checkpoints(run) if f != best]
    choices = [ModelChoice(f"{prefix}{f.name}{' (best)' if f == best else ''}", str(f)) for f in files]
    if (run / "hf_model" / "config.json").is_file():
        choices.append(ModelChoice(f"{prefix}hf_model (exported)", str(run / "hf_model")))
    return choices


def model_choices(run_dir: str | None, ckpt_path: str | None, model_dir: str | None) -> list[ModelChoice]:
    """What the page offers, the model to start with first: a run's checkpoints, a sweep's runs, or the one model.

    Exactly one of the three is given. A checkpoint brings its run's other checkpoints along, so it can be compared
    with them; a sweep folder lists every job's checkpoints, the job with the lowest val_loss first.
    """
    if sum(bool(x) for x in (run_dir, ckpt_path, model_dir)) != 1:
        raise LyricLMError(
            "give one of run_dir=<run> (its best checkpoint), ckpt_path=<run>/checkpoints/<file>.ckpt or "
            "model_dir=<run>/hf_model (or a hub id such as gpt2)"
        )
    if model_dir:
        return [ModelChoice(str(model_dir), str(model_dir))]
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        in_run = path.is_file() and path.parent.name == "checkpoints"  # else loading it says what is wrong
        others = [c for c in run_choices(path.parent.parent) if c.value != str(path)] if in_run else []
        return [ModelChoice(path.name, str(path)), *others]
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise LyricLMError(f"run_dir={run_dir} is not a folder; give a training run such as outputs/<date>/<time>")
    if (run / "checkpoints").is_dir():
        return run_choices(run)
    jobs = sweep_jobs(run)
    if not jobs:
        raise LyricLMError(
            f"run_dir={run_dir} holds no checkpoints/ and no sweep jobs with one; give a training run "
            "(outputs/<date>/<time>) or a sweep folder (outputs/multirun/<date>/<time>)"
        )
    by_loss = sorted(jobs, key=lambda j: run_summary(j).get("val_loss") or float("inf"))
    choices = []
    for job in by_loss:
        overrides = " ".join(run_summary(job).get("overrides") or [])
        choices += run_choices(job, prefix=f"job {job.name}{f' ({overrides})' if overrides else ''}: ")
    return choices


def model_source(value: str) -> tuple[str | None, str | None]:
    """(ckpt_path, model_dir) for a model list's value or one typed in: a checkpoint, a run, a folder, a hub id."""
    path = Path(value).expanduser()
    if path.is_dir() and (path / "checkpoints").is_dir():
        return str(best_checkpoint(path)), None
    if path.suffix == ".ckpt" or path.is_file():
        return value, None
    return None, value


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    header_fields: list[str]  # title/artist/genre in the order the model was trained with


class Models:
    """Models loaded once per checkpoint and kept while used; one load at a time (two tabs asking for the same
    checkpoint load it once)."""

    def __init__(self, tokenizer: str | None = None, size: int = MODELS_IN_MEMORY) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.loaded: OrderedDict[tuple[str, float], LoadedModel] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, value: str) -> LoadedModel:
        """The model behind a list value (loaded on first use); LyricLMError naming it when it is not a model."""
        value = (value or "").strip()
        if not value:
            raise LyricLMError("no model chosen; pick one in the list or type a checkpoint, run folder or hub id")
        ckpt_path, model_dir = model_source(value)
        local = Path(ckpt_path or model_dir).expanduser()
        # The file's time is in the key: last.ckpt rewritten by a training run still going is loaded again.
        key = (str(local.resolve()) if local.exists() else value, local.stat().st_mtime if local.exists() else 0.0)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        try:
            model, tokenizer = load_for_generation(ckpt_path, model_dir, self.tokenizer)
        except LyricLMError:
            raise
        except Exception as err:  # a folder or file transformers cannot read: the user's input, not a bug here
            raise LyricLMError(
                f"{value} could not be loaded as a model ({type(err).__name__}: {err}); give a checkpoint "
                "(<run>/checkpoints/*.ckpt), a run folder, an exported folder (<run>/hf_model) or a hub id"
            ) from err
        self.loaded[key] = LoadedModel(model, tokenizer, header_order(ckpt_path, model_dir))
        while len(self.loaded) > self.size:
            self.loaded.popitem(last=False)  # the least recently used
        return self.loaded[key]


class StopWriting(Exception):
    """Raised inside model.generate when the page asks to stop: it ends the sampling early."""


class SideBySide(BaseStreamer):
    """Every sample's new tokens as model.generate writes them: the prompt (1, T) first, then (num_samples,) a step.

    transformers' TextStreamer takes one sequence; sampling the songs one at a time instead would change the songs
    a seed gives (generate.py samples them side by side), so the tokens of all samples are collected here.
    """

    def __init__(self, tokenizer, stop: threading.Event) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.rows: list[list[int]] = []
        self.prompt_seen = False
        self.lines: list[str] = []  # songs that keep a form, written one at a time, a line at a time (`write`)

    def check(self) -> None:
        if self.stop.is_set():
            raise StopWriting

    def begin(self) -> None:
        """The next song that keeps a form begins."""
        self.check()
        self.lines.append("")

    def write(self, text: str) -> None:
        """The next piece (a line, a tag, a stanza break) of the song begun last."""
        self.check()
        self.lines[-1] += text

    def put(self, value: torch.Tensor) -> None:
        self.check()
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()  # (num_samples,)
        self.rows = self.rows or [[] for _ in tokens]
        for row, token in zip(self.rows, tokens, strict=True):
            # A finished song gets padding (the EOS id again) until all are done: nothing after its first EOS counts.
            if not row or row[-1] != self.tokenizer.eos_token_id:
                row.append(token)

    def end(self) -> None:
        """Nothing to flush: generate_songs' records hold the finished songs."""

    def texts(self) -> list[str]:
        if self.lines:
            return list(self.lines)
        # A token can end inside a character's UTF-8 bytes: drop the replacement mark until the next token completes it.
        return [self.tokenizer.decode(row, skip_special_tokens=True).rstrip("\ufffd") for row in list(self.rows)]


class PageProgress(SongProgress):
    """generate_songs' progress, for the page: the samples are collected side by side instead of printed (free songs
    token by token, songs that keep a form line by line)."""

    def __init__(self, collector: SideBySide) -> None:
        super().__init__()
        self.collector = collector

    def streamer(self, tokenizer, prompt: str, text_in: str, steps: int) -> BaseStreamer:
        return self.collector

    def begin(self, prompt: str, text_in: str, sample: int, steps: int) -> None:
        self.collector.begin()

    def write(self, text: str) -> None:
        self.collector.write(text)


def write_songs(
    loaded: LoadedModel,
    prompt: str,
    header: Mapping[str, str | None],
    sampling: Sampling,
    stop: threading.Event,
    form: Form | None = None,
) -> Iterator[tuple[list[str], list[dict[str, Any]] | None]]:
    """(texts so far, None) about ten times a second while the songs are written, then (texts, records) once.

    Sampling runs in a thread so the page gets the text as it grows; setting `stop` or closing this generator (the
    page stopped or left) ends the sampling at its next token (a song that keeps a form: at its next line). With a
    `form`, these are generate.py's songs in that form (generate_songs' `form`).
    """
    collector = SideBySide(loaded.tokenizer, stop)
    outcome: dict[str, Any] = {}

    def sample() -> None:
        try:
            # Held by this thread, not by the generator: a page that leaves without closing it cannot keep the lock.
            with SAMPLING_LOCK:
                model, tokenizer, progress = loaded.model, loaded.tokenizer, PageProgress(collector)
                outcome["records"] = generate_songs(model, tokenizer, [prompt], sampling, header, progress, form)
        except BaseException as err:  # re-raised below, in the page's thread
            outcome["error"] = err

    thread = threading.Thread(target=sample, name="lyric_lm-songs", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
            yield [prompt + text for text in collector.texts()], None
    finally:
        stop.set()
        thread.join()
    if isinstance(outcome.get("error"), StopWriting):
        return
    if "error" in outcome:
        raise outcome["error"]
    records = outcome["records"]
    yield [r["prompt"] + r["completion"] for r in records], records


def measure_form(text: str) -> dict[str, Any]:
    """A song's form: each stanza's rhyme scheme and syllables per line, and form.py's figures for the song."""
    shape = [
        {"rhyme_scheme": rhyme_scheme(lines), "syllables": [line_syllables(ln) for ln in lines]}
        for lines in stanzas(text)
    ]
    return {"stanzas": shape, **song_form(text)}


def form_markdown(form: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> str:
    """The form shown under a song: one line per stanza (scheme, syllables of each line), then the song's figures;
    for a song asked to keep a form (its record's `form`), how well it kept it."""
    if not form["stanzas"]:
        return "*Form: no lyric lines yet.*"
    lines = [
        f"{i}. **{s['rhyme_scheme']}** · syllables {' '.join(map(str, s['syllables']))}"
        for i, s in enumerate(form["stanzas"], 1)
    ]
    figures = (
        f"{form['syllables_per_line_mean']:.1f} ± {form['syllables_per_line_std']:.1f} syllables a line · "
        f"end rhymes {form['end_rhyme_rate']:.0%}" + (" · a repeated chorus" if form["repeated_chorus_share"] else "")
    )
    kept = [form_kept_markdown(record["form"], record["form_measured"])] if record and record.get("form") else []
    return "\n".join(["**Form** (rhyme scheme · syllables per line)", "", *lines, "", figures, *kept])


def form_kept_markdown(asked: Mapping[str, Any], measured: Mapping[str, Any]) -> str:
    """`Asked AABB, 8 ± 1 syllables, 3 stanzas: rhyme 6/6 pairs, syllables 92% of lines`."""
    wanted = [f"**{asked['rhyme_scheme']}**"] if asked["rhyme_scheme"] else []
    if asked["syllables"] is not None:
        wanted.append(f"{asked['syllables']} ± {asked['syllable_tolerance']} syllables")
    n = asked["stanzas"]
    wanted.append(", ".join(asked["structure"]) if asked["structure"] else f"{n} stanza{'s' * (n != 1)}")
    return f"\nAsked {', '.join(wanted)}: {form_summary(measured)}"


def default_keep_file(choices: Sequence[ModelChoice]) -> Path:
    """`<run>/kept_songs.jsonl` for a run's model, else in the folder the app was started from.

    Never inside an exported folder: export.py refuses to replace a folder holding files it did not write.
    """
    ckpt_path, model_dir = model_source(choices[0].value)
    if ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        return Path(ckpt_path).parent.parent / KEEP_FILE
    if model_dir and (Path(model_dir).expanduser().parent / "config_resolved.yaml").is_file():
        return Path(model_dir).expanduser().parent / KEEP_FILE
    return Path(KEEP_FILE)


def check_keep_file(path: Path) -> None:
    """Fail at startup, not at the first kept song, when the keep file cannot be written."""
    if path.is_dir():
        raise LyricLMError(f"keep_file={path} is a folder; give a file name such as {path}/{KEEP_FILE}")
    folder, writable = folder_to_write(path)
    if not writable:
        raise LyricLMError(f"keep_file={path}: {folder} is not a writable folder; give another keep_file=")


def keep_song(record: Mapping[str, Any], model: str, path: Path) -> int:
    """Append one song to the keep file (one JSON line: when, which model, the song and its settings); the count."""
    line = {"kept_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": model, **record}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:  # one write of one line: a crash cannot leave half a song
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError as err:
        raise LyricLMError(f"keep_file={path} cannot be written ({err.strerror}); give another keep_file=") from err
    return len(kept_songs(path))


def kept_songs(path: Path) -> list[dict[str, Any]]:
    """The kept songs, oldest first (a line that is not JSON, from an edit by hand, is skipped)."""
    if not path.is_file():
        return []
    songs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            songs.append(json.loads(line))
        except ValueError:
            continue
    return songs


def kept_table(path: Path) -> list[list[str]]:
    """Rows for the page's list of kept songs: when, model, prompt, first lines."""
    rows = []
    for song in kept_songs(path):
        opening = " / ".join(line for line in str(song.get("completion", "")).splitlines() if line.strip())[:80]
        rows.append([song.get("kept_at", ""), Path(str(song.get("model", ""))).name, song.get("prompt", ""), opening])
    return rows


def page_message(err: LyricLMError, outputs: int) -> list:
    """A mistake the user can fix, shown in the page (a warning and the status line) while the server goes on; the
    handler's other `outputs - 1` outputs keep what they show."""
    gr.Warning(str(err), title="Cannot do that")
    return [f"**Cannot do that:** {err}", *[gr.skip()] * (outputs - 1)]


@dataclass
class SongPanel:
    """One song on the page: its text, its form under it, and a button to keep it."""

    column: gr.Column
    text: gr.Textbox
    form: gr.Markdown
    keep: gr.Button

    @classmethod
    def build(cls, elem: str, visible: bool) -> SongPanel:
        with gr.Column(min_width=240, visible=visible) as column:
            text = gr.Textbox(label="song", lines=10, max_lines=40, interactive=False, elem_id=f"{elem}-text")
            form = gr.Markdown(elem_id=f"{elem}-form")
            keep = gr.Button("Keep", size="sm", interactive=False, elem_id=f"{elem}-keep")
        return cls(column, text, form, keep)

    def components(self) -> list[gr.components.Component]:
        return [self.column, self.text, self.form, self.keep]


def panel_updates(n: int, texts: Sequence[str], records: Sequence[Mapping[str, Any]] | None) -> list:
    """Updates for MAX_SAMPLES panels: the first n show `texts`; once the records are in, the form and Keep button."""
    updates = []
    for i in range(MAX_SAMPLES):
        done = records is not None and i < len(records)
        text = texts[i] if i < len(texts) else ""
        cut = f" (cut at {records[i]['max_new_tokens']} tokens)" if done and not records[i]["ended"] else ""
        updates += [
            gr.Column(visible=i < n),
            gr.Textbox(value=text, label=f"song {i + 1}{cut}"),
            gr.Markdown(value=form_markdown(measure_form(text), records[i]) if done else ""),
            gr.Button(interactive=done),
        ]
    return updates


class Playground:
    """The page and what its buttons do; `models` and the keep file are shared by every browser tab."""

    def __init__(
        self,
        choices: Sequence[ModelChoice],
        models: Models,
        keep_file: Path,
        sampling: Sampling,
        start: Mapping[str, str | None],
        form: Form | None = None,
    ) -> None:
        self.choices = list(choices)
        self.labels = {c.value: c.label for c in choices}
        self.models = models
        self.keep_file = keep_file
        self.sampling = sampling  # the command line's: the page changes PAGE_SETTINGS, the others hold
        self.form = form or Form()  # the command line's: the page changes PAGE_FORM, `candidates` holds
        self.start = start  # the page's first prompt and header
        self.writing: set[threading.Event] = set()  # the stop events of the songs being written, from every tab

    def label(self, value: str) -> str:
        return self.labels.get(value, value)

    def load(self, value: str) -> LoadedModel:
        """The model (loaded now or before): a bad path is a message before the panels are cleared."""
        with self.models.lock:
            return self.models.get(value)

    def songs(
        self, value: str, prompt: str, header: Mapping[str, str | None], sampling: Sampling, form: Form
    ) -> Iterator[tuple[list[str], list[dict[str, Any]] | None]]:
        """write_songs with the model, the header in its training order; a Stop button ends it."""
        loaded = self.load(value)
        header = {field: (header.get(field) or "").strip() or None for field in loaded.header_fields}
        stop = threading.Event()
        self.writing.add(stop)
        try:
            yield from write_songs(loaded, prompt or "", header, sampling, stop, form)
        finally:
            self.writing.discard(stop)

    def stop(self) -> str:
        """The Stop buttons: the songs being written end at their next token (a local page: every tab's songs)."""
        for stop in list(self.writing):
            stop.set()
        return "Stopped."

    def write(self, value: str, prompt: str, title: str, artist: str, genre: str, *settings: Any) -> Iterator[list]:
        """The Write button: num_samples songs side by side, streamed. Outputs: status, records, the panels."""
        try:
            sampling, form = self.page_settings(*settings)
            self.load(value)
            label = self.label(value)
            yield [f"Writing with **{label}** ...", None, *panel_updates(sampling.num_samples, [], None)]
            header = dict(zip(HEADER_FIELDS, (title, artist, genre), strict=True))
            start = time.monotonic()
            for texts, records in self.songs(value, prompt, header, sampling, form):
                took = f" in {time.monotonic() - start:.1f} s"
                status = f"Writing with **{label}** ..." if records is None else f"Written by **{label}**{took}."
                kept = [{**r, "model": value} for r in records] if records else None
                yield [status, kept, *panel_updates(sampling.num_samples, texts, records)]
        except LyricLMError as err:
            yield page_message(err, 2 + PANEL_OUTPUTS)

    def compare(
        self, value_a: str, value_b: str, prompt: str, title: str, artist: str, genre: str, *settings: Any
    ) -> Iterator[list]:
        """The Compare button: the same prompt, header, settings and seed to both models, one after the other.
        Outputs: status, then records and panels of side A, then of side B."""
        try:
            sampling, form = self.page_settings(*settings)
            self.load(value_a)
            self.load(value_b)
            n = sampling.num_samples
            header = dict(zip(HEADER_FIELDS, (title, artist, genre), strict=True))
            sides: list[list] = [[None, *panel_updates(n, [], None)] for _ in (value_a, value_b)]
            yield ["Comparing ...", *sides[0], *sides[1]]
            for side, value in enumerate((value_a, value_b)):
                for texts, records in self.songs(value, prompt, header, sampling, form):
                    kept = [{**r, "model": value} for r in records] if records else None
                    sides[side] = [kept, *panel_updates(n, texts, records)]
                    yield [f"Comparing: writing with **{self.label(value)}** ...", *sides[0], *sides[1]]
            yield [f"The same prompt, settings and seed ({sampling.seed}) to both.", *sides[0], *sides[1]]
        except LyricLMError as err:
            yield page_message(err, 1 + 2 * (1 + PANEL_OUTPUTS))

    def page_settings(self, *values: Any) -> tuple[Sampling, Form]:
        """The page's PAGE_SETTINGS and PAGE_FORM over the command line's other settings (repetition_penalty,
        candidates, ...), checked: Sampling and Form name a bad value. Gradio gives whole numbers as floats (a
        slider's 2.0); an empty box is None (any), a structure is parts apart by commas or spaces."""
        values = tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in values)
        sampling_values, form_values = values[: len(PAGE_SETTINGS)], values[len(PAGE_SETTINGS) :]
        sampling = replace(self.sampling, **dict(zip(PAGE_SETTINGS, sampling_values, strict=True)))
        if sampling.num_samples > MAX_SAMPLES:
            raise LyricLMError(
                f"num_samples={sampling.num_samples}: the page shows at most {MAX_SAMPLES} songs side by side; "
                f"generate.py num_samples={sampling.num_samples} writes more"
            )
        asked = dict(zip(PAGE_FORM, form_values, strict=True))
        asked = {k: v.strip() or None if isinstance(v, str) else v for k, v in asked.items()}
        for name in ("syllables", "stanzas"):  # a number box shows an empty value as 0: any syllables, the default
            asked[name] = asked[name] or None
        if asked["structure"]:
            asked["structure"] = [p for p in asked["structure"].replace(",", " ").split() if p]
        if asked["syllable_tolerance"] is None:
            asked["syllable_tolerance"] = self.form.syllable_tolerance
        return sampling, Form.from_config({**asked, "candidates": self.form.candidates})

    def keep(self, i: int, records: list[dict[str, Any]] | None) -> list:
        """A Keep button: append song i of the panels' records to the keep file."""
        if not records or i >= len(records):  # a Keep button pressed as new songs were started
            return page_message(LyricLMError("this song is not written yet; keep it once it is"), 3)
        record = dict(records[i])
        model = record.pop("model")
        # As generate.py's JSONL: `form` is the form asked for (a song that keeps one), `form_measured` what it has.
        measured = measure_form(record["prompt"] + record["completion"])
        record["form_measured"] = {**record.get("form_measured", {}), **measured}
        try:
            count = keep_song(record, model, self.keep_file)
        except LyricLMError as err:
            return page_message(err, 3)
        return [f"Kept song {i + 1} in `{self.keep_file}` ({count} kept).", *self.kept_view()]

    def kept_view(self) -> list:
        rows = kept_table(self.keep_file)
        download = gr.DownloadButton(
            f"Download kept songs ({len(rows)})",
            value=str(self.keep_file) if rows else None,
            interactive=bool(rows),
        )
        return [rows, download]


def build_page(play: Playground) -> gr.Blocks:
    """The page: prompt, header, sampling and form settings on top, then tabs to write, compare, download kept songs."""
    options = [(c.label, c.value) for c in play.choices]
    start = play.choices[0].value
    # Side by side starts with the next checkpoint listed (the run's earliest) against the model the page starts
    # with: how far training has come.
    earlier = next((c.value for c in play.choices[1:] if not c.value.endswith("last.ckpt")), start)
    n = min(play.sampling.num_samples, MAX_SAMPLES)
    with gr.Blocks(title="lyric_lm playground", analytics_enabled=False) as page:
        gr.Markdown(f"## lyric_lm playground\nStarted with **{play.label(start)}**", elem_id="heading")
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(
                play.start.get("prompt") or "", label="Prompt: how the song begins", lines=2, scale=3, elem_id="prompt"
            )
            header = [
                gr.Textbox(play.start.get(f) or "", label=f, placeholder="(optional)", elem_id=f) for f in HEADER_FIELDS
            ]
        with gr.Accordion("Sampling", open=True), gr.Row():
            settings = sampling_controls(play.sampling)
        # Open from the start, as Sampling: Gradio re-renders an accordion's children in ways that can lose typed
        # values (gradio-app/gradio#12535), and the browser test once saw no form asked after opening a closed one.
        with gr.Accordion("Form: rhyme scheme, syllables, stanzas (empty: a free song)", open=True), gr.Row():
            settings += form_controls(play.form)
        status = gr.Markdown(elem_id="status")
        with gr.Tabs():
            with gr.Tab("Write", id="write"):
                with gr.Row(equal_height=True):
                    model = model_list(options, start, "Model: pick one or type a checkpoint, run, hub id", "model", 4)
                    write = gr.Button("Write songs", variant="primary", scale=1, elem_id="write-button")
                    stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop-button")
                with gr.Row():
                    panels = [SongPanel.build(f"song-{i}", i < n) for i in range(MAX_SAMPLES)]
            with gr.Tab("Side by side", id="compare"):
                with gr.Row(equal_height=True):
                    gr.Markdown("The same prompt, header, settings and seed go to both models.")
                    compare = gr.Button("Compare", variant="primary", elem_id="compare-button")
                    stop_compare = gr.Button("Stop", variant="stop", elem_id="stop-compare-button")
                with gr.Row():
                    with gr.Column():
                        model_a = model_list(options, earlier, "Model A", "model-a")
                        panels_a = [SongPanel.build(f"a-{i}", i < n) for i in range(MAX_SAMPLES)]
                    with gr.Column():
                        model_b = model_list(options, start, "Model B", "model-b")
                        panels_b = [SongPanel.build(f"b-{i}", i < n) for i in range(MAX_SAMPLES)]
            with gr.Tab("Kept songs", id="kept"):
                gr.Markdown(f"Each kept song is a JSON line of `{play.keep_file}`: the song, its settings and model.")
                table = gr.Dataframe(headers=["kept at", "model", "prompt", "song"], interactive=False, wrap=True)
                download = gr.DownloadButton("Download kept songs", elem_id="download")

        # Each panel set's records (gr.State: one per browser tab) are what its Keep buttons save.
        records, records_a, records_b = gr.State(), gr.State(), gr.State()
        inputs = [prompt, *header, *settings]
        writing = write.click(play.write, [model, *inputs], [status, records, *components(panels)])
        side_outputs = [records_a, *components(panels_a), records_b, *components(panels_b)]
        comparing = compare.click(play.compare, [model_a, model_b, *inputs], [status, *side_outputs])
        for button in (stop, stop_compare):
            # The sampling thread ends at its next token (play.stop), and the page stops listening (cancels).
            button.click(play.stop, None, status, cancels=[writing, comparing], queue=False)
        for state, panel_set in ((records, panels), (records_a, panels_a), (records_b, panels_b)):
            for i, panel in enumerate(panel_set):
                panel.keep.click(lambda recs, i=i: play.keep(i, recs), state, [status, table, download])
        page.load(play.kept_view, None, [table, download])
    return page


def sampling_controls(sampling: Sampling) -> list[gr.components.Component]:
    """PAGE_SETTINGS' inputs, in that order, starting at the command line's values. The number boxes take any
    value, so one out of range reaches Sampling and gets its message."""
    return [
        gr.Slider(0.05, 2.0, value=sampling.temperature, step=0.05, label="temperature", elem_id="temperature"),
        gr.Number(sampling.top_k, precision=0, label="top_k (0: off)", elem_id="top_k"),
        gr.Slider(0.05, 1.0, value=sampling.top_p, step=0.05, label="top_p (1: off)", elem_id="top_p"),
        gr.Number(sampling.max_new_tokens, precision=0, label="max_new_tokens", elem_id="max_new_tokens"),
        gr.Number(sampling.seed, precision=0, label="seed", elem_id="seed"),
        gr.Slider(
            1,
            MAX_SAMPLES,
            value=min(sampling.num_samples, MAX_SAMPLES),
            step=1,
            label="num_samples",
            elem_id="num_samples",
        ),
    ]


def form_controls(form: Form) -> list[gr.components.Component]:
    """PAGE_FORM's inputs, in that order, starting at the command line's form (generate.py's settings of the same
    names); empty boxes and 0 ask for nothing, and a bad value reaches Form and gets its message."""
    return [
        gr.Textbox(form.rhyme_scheme or "", label="rhyme_scheme", placeholder="AABB, ABAB", elem_id="rhyme_scheme"),
        gr.Number(form.syllables or 0, precision=0, label="syllables per line (0: any)", elem_id="syllables"),
        gr.Number(form.syllable_tolerance, precision=0, label="syllable_tolerance (±)", elem_id="syllable_tolerance"),
        gr.Number(form.stanzas or 0, precision=0, label="stanzas (0: 3, or one per part)", elem_id="stanzas"),
        gr.Textbox(
            ", ".join(form.structure or ()),
            label="structure (a chorus is written once, then repeated)",
            placeholder="verse, chorus, verse, chorus",
            elem_id="structure",
        ),
    ]


def model_list(options: list[tuple[str, str]], value: str, label: str, elem_id: str, scale: int | None = None):
    """A list of the run's models that also takes a typed path or hub id."""
    return gr.Dropdown(options, value=value, label=label, allow_custom_value=True, scale=scale, elem_id=elem_id)


def components(panels: Sequence[SongPanel]) -> list[gr.components.Component]:
    return [c for panel in panels for c in panel.components()]


@dataclass(frozen=True)
class Server:
    """Where the page listens: host, port, and whether Gradio also makes a public share link."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise LyricLMError(f"port={self.port} is not a port; give a whole number from 1 to 65535, such as 7860")
        if not isinstance(self.share, bool):
            raise LyricLMError(f"share={self.share} is not true or false")
        if not self.host or not isinstance(self.host, str):
            raise LyricLMError(f"host={self.host} is not a host name; give 127.0.0.1 (this machine) or 0.0.0.0")


def serve(cfg: Mapping[str, Any]) -> None:
    """app.py: check the settings, load the starting model, then serve the page until Ctrl-C."""
    server = Server(cfg.get("host") or "127.0.0.1", cfg.get("port"), cfg.get("share"))
    sampling = Sampling.from_config(cfg)  # the page's starting values, checked as generate.py checks them
    form = Form.from_config(cfg)
    choices = model_choices(cfg.get("run_dir"), cfg.get("ckpt_path"), cfg.get("model_dir"))
    keep_file = Path(cfg.get("keep_file") or default_keep_file(choices)).expanduser()
    check_keep_file(keep_file)
    models = Models(cfg.get("tokenizer"))
    models.get(choices[0].value)  # now: a path that is not a model fails here, as one line, before any page
    start = {f: cfg.get(f) for f in ("prompt", *HEADER_FIELDS)}
    page = build_page(Playground(choices, models, keep_file, sampling, start, form))
    try:
        _, local_url, share_url = page.queue().launch(
            server_name=server.host,
            server_port=server.port,
            share=server.share,
            prevent_thread_lock=True,  # print our own line, then block below
            quiet=True,
            allowed_paths=[str(keep_file.resolve())],  # the Download button serves this one file from outside cwd
            theme=THEME,
            footer_links=[],  # no links to Gradio's API page or settings: a playground, not an API
            ssr_mode=False,  # server-side rendering would need Node.js
            mcp_server=False,
            pwa=False,
        )
    except OSError as err:  # Gradio's "Cannot find empty port"
        raise LyricLMError(f"port={server.port} on {server.host} is in use or not allowed; give another port=") from err
    print(f"lyric_lm playground on {local_url} (Ctrl-C to stop); kept songs go to {keep_file}", flush=True)
    if share_url:
        print(f"public share link (anyone with it can use this machine's model): {share_url}", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()
