"""Lyric-quality metrics (pure functions), and evaluate.py: held-out perplexity, lyric metrics and song form of
sampled songs beside the held-out real songs; or, with `songs_file=`, the lyric metrics and form of any lyrics.

Words, lyric lines and stanzas are form.py's: lines are the non-empty lines that are not section tags like
`[Chorus]` or header lines like `genre: folk`; stanzas are separated by blank lines.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from datasets import disable_progress_bars
from torch.utils.tensorboard import SummaryWriter

from lyric_lm.console import progress_bar, quiet_libraries
from lyric_lm.data import LyricsDataModule
from lyric_lm.data.cleaning import CleanOptions, clean_songs
from lyric_lm.data.reading import SONG_SEPARATOR, parse_songs, read_songs
from lyric_lm.errors import LyricLMError
from lyric_lm.run.files import atomic_write, user_write_errors
from lyric_lm.songs.form import form_metrics, stanzas, words
from lyric_lm.songs.loading import global_step_of, hf_model_of, load_checkpoint, run_config_of, run_dir_of
from lyric_lm.songs.sampling import Sampling, SongProgress, generate_songs, header_order, read_prompts, write_jsonl
from lyric_lm.tokenizer import load_tokenizer

# Everything evaluate writes into output_dir: a folder holding anything else is the user's, and evaluate refuses it.
EVAL_FILES = frozenset({"metrics.json", "report.md", "samples.jsonl", "tensorboard"})
WRITE_FIX = "free some space or give another output_dir="
SONGS_FILE_FIX = (
    'give a .jsonl file (one JSON object per line with a "text" field, as generate.py output_file= writes) '
    f"or a .txt file (songs separated by a line {SONG_SEPARATOR})"
)
JSONL_FIX = (
    'each line of a .jsonl songs file is one JSON object with a "text" field, as generate.py output_file= writes'
)
# The rows of the report's Form table; stanza schemes are shares of 4-line groups (form.stanza_forms).
SCHEMES = {"AABB": "couplets", "ABAB": "alternate", "ABCB": "ballad", "ABBA": "enclosed", "AAAA": "monorhyme"}
FORM_ROWS = (
    "songs / lines",
    "syllables per line (mean ± sd)",
    "end-rhyme rate",
    "near-rhyme rate",
    "4-line stanza groups",
    *(f"{scheme} stanzas ({name})" for scheme, name in SCHEMES.items()),
    "stanzas of another scheme",
    "repeated chorus share",
    "end-word coverage",
)
FORM_NOTE = (
    "Rhyme rates are shares of the lines whose end word is in the CMU Pronouncing Dictionary (end-word coverage): "
    "a line rhymes when its end word rhymes with that of a line at most 3 lines away in its stanza (near: only a "
    "slant rhyme there). Stanza schemes are shares of the 4-line groups of stanzas; a repeated chorus is a stanza "
    "that comes back."
)


def ngrams(seq: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over all texts (1.0: no n-gram ever repeats)."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_line_rate(texts: Iterable[str]) -> float:
    """Share of lyric lines that repeat an earlier line of the same song (case and punctuation ignored)."""
    total = repeated = 0
    for text in texts:
        seen = set()
        for stanza in stanzas(text):
            for line in stanza:
                key = " ".join(words(line))
                total += 1
                repeated += key in seen
                seen.add(key)
    return repeated / total if total else 0.0


def line_stats(texts: Iterable[str]) -> dict[str, float]:
    """Mean words per lyric line and mean lines per stanza."""
    songs = [stanzas(t) for t in texts]
    lines = [line for song in songs for stanza in song for line in stanza]
    n_stanzas = sum(len(song) for song in songs)
    return {
        "mean_line_words": sum(len(words(ln)) for ln in lines) / len(lines) if lines else 0.0,
        "mean_stanza_lines": len(lines) / n_stanzas if n_stanzas else 0.0,
    }


def memorisation(generated: Iterable[str], training: Iterable[str], n: int = 8) -> dict[str, Any]:
    """How much of the generated text is copied from the training songs.

    Returns `ngram_share`: the share of generated word n-grams that occur in some training song, and
    `longest_copied_words` / `longest_copied`: the longest run of words copied verbatim from one training song.
    """
    train_songs = [words(t) for t in training]
    train_grams = {g for ws in train_songs for g in ngrams(ws, n)}
    # Songs joined by "\n" in a space-delimited string: a substring test finds a span within one song only.
    haystack = " " + " \n ".join(" ".join(ws) for ws in train_songs) + " "
    total = copied = 0
    best: list[str] = []
    for text in generated:
        ws = words(text)
        grams = ngrams(ws, n)
        total += len(grams)
        copied += sum(g in train_grams for g in grams)
        # Two pointers: grow the span while it is in the training text, else drop its first word. O(len) searches.
        i = j = 0
        while j < len(ws):
            if f" {' '.join(ws[i : j + 1])} " in haystack:
                j += 1
                if j - i > len(best):
                    best = ws[i:j]
            else:
                i += 1
                j = max(j, i)
    return {
        "ngram_n": n,
        "ngram_share": copied / total if total else 0.0,
        "generated_ngrams": total,
        "longest_copied_words": len(best),
        "longest_copied": " ".join(best),
    }


def lyric_metrics(songs: Sequence[str], training: Sequence[str] | None = None, n: int = 8) -> dict[str, Any]:
    """Every lyric-quality figure of a set of songs; `memorisation` only against `training` songs when given.
    (Their form, rhyme included, is form.form_metrics'.)"""
    metrics = {
        "songs": len(songs),
        "distinct_1": distinct_n(songs, 1),
        "distinct_2": distinct_n(songs, 2),
        "repeated_line_rate": repeated_line_rate(songs),
        **line_stats(songs),
    }
    if training is not None:
        metrics["memorisation"] = memorisation(songs, training, n)
    return metrics


@torch.no_grad()
def token_perplexity(model, loader: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """Mean next-token loss over every predicted token of `loader` (not a mean of batch means), and exp of it."""
    device = next(model.parameters()).device
    nll = 0.0
    n_tokens = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels: T - 1 predictions per row
        nll += float(model(**batch).loss) * n
        n_tokens += n
    loss = nll / n_tokens if n_tokens else float("nan")
    return {"loss": loss, "ppl": math.exp(loss) if n_tokens else float("nan"), "tokens": n_tokens}


# ---- the report ---------------------------------------------------------------------------------------------------


def lyric_rows(lyrics: Mapping[str, Any], copied_label: str) -> list[tuple[str, str]]:
    """The lyric-metric rows of a report; memorisation's two rows (the first labelled `copied_label`) when measured."""
    rows = [
        ("distinct-1 / distinct-2", f"{lyrics['distinct_1']:.3f} / {lyrics['distinct_2']:.3f}"),
        ("repeated-line rate", f"{lyrics['repeated_line_rate']:.3f}"),
        ("mean words per line", f"{lyrics['mean_line_words']:.2f}"),
        ("mean lines per stanza", f"{lyrics['mean_stanza_lines']:.2f}"),
    ]
    mem = lyrics.get("memorisation")
    if mem is not None:
        rows += [
            (copied_label.format(n=mem["ngram_n"]), f"{mem['ngram_share']:.3f} of {mem['generated_ngrams']:,}"),
            ("longest span copied verbatim", f"{mem['longest_copied_words']} words"),
        ]
    return rows


def form_cells(form: Mapping[str, float]) -> list[str]:
    """One column of the Form table (the rows of FORM_ROWS) from `form_metrics` of a set of songs."""
    return [
        f"{form['songs']} / {form['lines']}",
        f"{form['syllables_per_line_mean']:.1f} ± {form['syllables_per_line_std']:.1f}",
        f"{form['end_rhyme_rate']:.3f}",
        f"{form['near_rhyme_rate']:.3f}",
        f"{form['stanza_groups']}",
        *(f"{form[f'scheme_{scheme.lower()}']:.3f}" for scheme in (*SCHEMES, "other")),
        f"{form['repeated_chorus_share']:.3f}",
        f"{form['end_word_coverage']:.3f}",
    ]


def form_table(columns: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The Form table in Markdown: one column per set of songs, headed by its label, side by side."""
    cells = [form_cells(form) for form in columns.values()]
    lines = ["| form | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return lines + [f"| {row} | " + " | ".join(c[i] for c in cells) + " |" for i, row in enumerate(FORM_ROWS)]


def metric_table(rows: Sequence[tuple[str, str]]) -> list[str]:
    return ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def report_markdown(metrics: Mapping[str, Any], songs: Sequence[str]) -> str:
    """metrics.json of a checkpoint as a readable page, followed by a few of the generated songs."""
    gen, mem, form = metrics["generation"], metrics["generation"]["memorisation"], metrics["form"]
    ppl = metrics["perplexity"]
    rows = [(f"perplexity ({metrics['eval_split']} split, {ppl['tokens']} tokens)", f"{ppl['ppl']:.2f}")]
    rows += lyric_rows(gen, "generated {n}-grams in training")
    lines = [
        f"# Evaluation of `{metrics['ckpt_path']}`",
        "",
        f"{gen['songs']} songs sampled with {json.dumps(metrics['sampling'])}.",
        "",
        *metric_table(rows),
        "",
        f"Longest copied span: “{mem['longest_copied']}”",
        "",
        "## Form",
        "",
        *form_table({"generated": form["generated"], "held-out real": form["held_out"]}),
        "",
        f"Held-out real: the {form['held_out']['songs']} songs of the {metrics['eval_split']} split. {FORM_NOTE}",
        "",
        "## Samples",
        "",
    ]
    for i, song in enumerate(songs[:5], 1):
        lines += [f"### Song {i}", "", "```text", song.strip(), "```", ""]
    return "\n".join(lines)


def songs_file_report(metrics: Mapping[str, Any]) -> str:
    """metrics.json of `evaluate.py songs_file=...` as a readable page."""
    lyrics, form = metrics["lyrics"], metrics["form"]
    columns = {"songs file": form["songs_file"]}
    against = "no model, so no perplexity; no data_path=, so no memorisation and no real songs beside them"
    if "data_path" in form:
        columns["data_path songs"] = form["data_path"]
        against = f"no model, so no perplexity; beside the {form['data_path']['songs']} songs of {metrics['data_path']}"
    lines = [
        f"# Evaluation of `{metrics['songs_file']}`",
        "",
        f"{songs_count(lyrics['songs'])}, scored as lyrics ({against}).",
        "",
        *metric_table(lyric_rows(lyrics, "{n}-grams found in data_path songs")),
        "",
        "## Form",
        "",
        *form_table(columns),
        "",
        FORM_NOTE,
        "",
    ]
    return "\n".join(lines)


def headline(metrics: Mapping[str, Any]) -> str:
    """The figures to read first, in one line:
    `val ppl 42.17 | distinct-2 0.853 | 8-grams copied 0.012 | end-rhyme rate 0.310 generated vs 0.620 real`."""
    if "songs_file" in metrics:
        lyrics, form = metrics["lyrics"], metrics["form"]
        parts = [songs_count(lyrics["songs"]), f"distinct-2 {lyrics['distinct_2']:.3f}"]
        if "memorisation" in lyrics:
            mem = lyrics["memorisation"]
            parts.append(f"{mem['ngram_n']}-grams copied {mem['ngram_share']:.3f}")
        rhyme = f"end-rhyme rate {form['songs_file']['end_rhyme_rate']:.3f}"
        if "data_path" in form:
            rhyme += f" vs {form['data_path']['end_rhyme_rate']:.3f} in data_path"
        return " | ".join([*parts, rhyme])
    gen, mem, form = metrics["generation"], metrics["generation"]["memorisation"], metrics["form"]
    return (
        f"{metrics['eval_split']} ppl {metrics['perplexity']['ppl']:.2f} | distinct-2 {gen['distinct_2']:.3f} | "
        f"{mem['ngram_n']}-grams copied {mem['ngram_share']:.3f} | end-rhyme rate "
        f"{form['generated']['end_rhyme_rate']:.3f} generated vs {form['held_out']['end_rhyme_rate']:.3f} real"
    )


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of metrics.json under TensorBoard tags: eval/<split>_ppl, eval/distinct_1, ...,
    eval/form_generated/end_rhyme_rate and eval/form_held_out/end_rhyme_rate, ..."""
    gen, mem = metrics["generation"], metrics["generation"]["memorisation"]
    return {
        f"eval/{metrics['eval_split']}_loss": metrics["perplexity"]["loss"],
        f"eval/{metrics['eval_split']}_ppl": metrics["perplexity"]["ppl"],
        **{f"eval/{k}": gen[k] for k in ("distinct_1", "distinct_2", "repeated_line_rate")},
        **{f"eval/{k}": gen[k] for k in ("mean_line_words", "mean_stanza_lines")},
        "eval/memorised_ngram_share": mem["ngram_share"],
        "eval/longest_copied_words": mem["longest_copied_words"],
        **{f"eval/form_{songs}/{k}": v for songs, form in metrics["form"].items() for k, v in form.items()},
    }


# ---- evaluate.py --------------------------------------------------------------------------------------------------


def evaluate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """evaluate.py: a checkpoint (`ckpt_path=`), or the lyrics of a file without a model (`songs_file=`)."""
    quiet_libraries()
    ckpt_path, songs_file = cfg.get("ckpt_path"), cfg.get("songs_file")
    if ckpt_path and songs_file:
        raise LyricLMError(
            "give one of ckpt_path= (evaluate a model) or songs_file= (score lyrics without a model), not both"
        )
    if not ckpt_path and not songs_file:
        raise LyricLMError(
            "nothing to evaluate; set ckpt_path=<run>/checkpoints/last.ckpt to evaluate a model, "
            "or songs_file=<songs.jsonl|songs.txt> to score lyrics without one"
        )
    ngram = cfg.get("ngram", 8)
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
        raise LyricLMError(f"ngram={ngram} is out of range; ngram must be a whole number, at least 1")
    return score_songs_file(cfg, ngram) if songs_file else evaluate_checkpoint(cfg, ngram)


def evaluate_checkpoint(cfg: Mapping[str, Any], ngram: int) -> dict[str, Any]:
    """Perplexity on held-out songs, lyric metrics and form of sampled songs beside the held-out songs' form;
    metrics.json, report.md, samples.jsonl and TensorBoard scalars.

    Each phase says on stderr that it starts, the long ones with a bar; stdout gets the report and where it went.
    """
    sampling = Sampling.from_config(cfg)
    prompts = read_prompts(cfg.get("prompt"), cfg.get("prompt_file"))
    ckpt_path = cfg.get("ckpt_path")
    module = load_checkpoint(ckpt_path)  # its errors first, as the one line: nothing is printed before them
    out = Path(cfg.get("output_dir") or run_dir_of(ckpt_path) / "eval").expanduser()
    check_output_dir(out)  # found now, not after minutes of sampling
    data = data_of_run(ckpt_path, cfg.get("data_path"))
    phase(f"loaded checkpoint {ckpt_path}")
    model_cfg = module.hparams["model"]
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    model = hf_model_of(module)

    phase(f"reading lyrics from {data.get('path') or 'the builtin sample'}")
    datamodule = LyricsDataModule(tokenizer=tokenizer, **data)
    split, loader, held_out, train_texts = held_out_and_training(datamodule, data)
    phase(f"perplexity on {len(loader.dataset)} held-out blocks ({split} split)")
    ppl = token_perplexity(model, progress_bar(loader, desc="perplexity", unit="batch"))

    header = {field: cfg.get(field) for field in header_order(cfg.get("ckpt_path"), None)}
    phase(f"sampling {len(prompts) * sampling.num_samples} songs")
    records = generate_songs(model, tokenizer, prompts, sampling, header, SongProgress(bar=True))
    texts = [r["text"] for r in records]
    phase(f"memorisation against {len(train_texts)} training songs")
    gen = lyric_metrics(texts)
    # Memorisation counts only what the model wrote, not the prompt it was given.
    gen["memorisation"] = memorisation([r["completion"] for r in records], train_texts, ngram)
    phase(f"song form of {len(texts)} generated and {len(held_out)} held-out songs")
    form = {"generated": form_metrics(texts), "held_out": form_metrics(held_out)}
    step = global_step_of(ckpt_path)
    metrics = {
        "ckpt_path": str(ckpt_path),
        "global_step": step,
        "eval_split": split,
        "perplexity": ppl,
        "sampling": asdict(sampling),
        "prompts": prompts,
        "generation": gen,
        "form": form,
    }

    phase(f"writing the report to {out}")
    report = report_markdown(metrics, texts)
    write_jsonl(records, out / "samples.jsonl")
    write_report(out, metrics, report)
    with user_write_errors(out, WRITE_FIX):
        writer = SummaryWriter(str(out / "tensorboard"))
        for name, value in scalar_metrics(metrics).items():
            writer.add_scalar(name, value, global_step=step or 0)
        writer.add_text("eval/report", report, global_step=step or 0)
        writer.close()
    print(report.split("\n## Samples")[0])
    print(f"wrote {out / 'metrics.json'}, report.md, samples.jsonl and tensorboard/")
    print(headline(metrics))
    return metrics


def score_songs_file(cfg: Mapping[str, Any], ngram: int) -> dict[str, Any]:
    """evaluate.py songs_file=<.jsonl|.txt>: lyric metrics and form of any lyrics, no model; with `data_path=`,
    memorisation against its songs and their form beside. Writes metrics.json and report.md (no TensorBoard: there
    is no training step to log them at)."""
    songs_file, data_path = str(cfg["songs_file"]), cfg.get("data_path")
    songs = read_songs_file(songs_file)
    path = Path(songs_file).expanduser()
    out = Path(cfg.get("output_dir") or path.with_name(f"{path.stem}_eval")).expanduser()
    check_output_dir(out)
    if data_path:
        check_data_path(data_path)
    phase(f"read {songs_count(len(songs))} from {songs_file}")
    texts = [s["text"] for s in songs]
    lyrics = lyric_metrics(texts)
    form = {"songs_file": form_metrics(texts)}
    if data_path:
        phase(f"reading lyrics from {data_path}")
        real = songs_of(data_path)
        phase(f"memorisation and song form against {len(real)} songs of {data_path}")
        # As for a checkpoint, a generate.py record's prompt is not counted as copied: only its completion.
        lyrics["memorisation"] = memorisation([s["completion"] for s in songs], real, ngram)
        form["data_path"] = form_metrics(real)
    metrics = {"songs_file": songs_file, "data_path": data_path, "lyrics": lyrics, "form": form}

    phase(f"writing the report to {out}")
    report = songs_file_report(metrics)
    write_report(out, metrics, report)
    print(report)
    print(f"wrote {out / 'metrics.json'} and report.md")
    print(headline(metrics))
    return metrics


def songs_count(n: int) -> str:
    return f"{n} song" if n == 1 else f"{n} songs"


def phase(message: str) -> None:
    """A line on stderr as a phase of evaluate.py starts (stdout keeps the report alone)."""
    print(message, file=sys.stderr, flush=True)


# ---- its inputs and outputs ---------------------------------------------------------------------------------------


def read_songs_file(songs_file: str) -> list[dict[str, str]]:
    """The songs of a lyrics file: [{"text", "completion"}, ...] (empty songs skipped).

    `.jsonl`: one JSON object per line, its lyrics in "text" (or "lyrics"); "completion" is what a model wrote of
    it when the record says (generate.py's output_file= records), else the whole text. `.txt`: songs separated by a
    line `===` (their `title:`/`artist:`/`genre:` header blocks dropped), or one song when there is no such line.
    """
    path = Path(songs_file).expanduser()
    if not path.exists():
        raise LyricLMError(f"songs_file={songs_file} does not exist; {SONGS_FILE_FIX}")
    if path.is_dir():
        raise LyricLMError(f"songs_file={songs_file} is a folder; {SONGS_FILE_FIX}")
    if path.suffix.lower() not in (".jsonl", ".txt"):
        raise LyricLMError(f"songs_file={songs_file} is neither .jsonl nor .txt; {SONGS_FILE_FIX}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LyricLMError(f"songs_file={songs_file} is not UTF-8 text; save it as UTF-8 ({SONGS_FILE_FIX})") from err
    except OSError as err:
        raise LyricLMError(f"cannot read songs_file={songs_file}: {err.strerror}") from err
    if path.suffix.lower() == ".jsonl":
        lines = enumerate(text.splitlines(), 1)
        songs = [json_song(line, f"songs_file={songs_file} line {n}") for n, line in lines if line.strip()]
    else:
        songs = [{"text": s["text"], "completion": s["text"]} for s in parse_songs(text, SONG_SEPARATOR)]
    songs = [s for s in songs if s["text"].strip()]
    if not songs:
        raise LyricLMError(f"songs_file={songs_file} holds no lyrics; {SONGS_FILE_FIX}")
    return songs


def json_song(line: str, where: str) -> dict[str, str]:
    """{"text", "completion"} from a line of a JSONL songs file; raises naming `where` it is when it holds none."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise LyricLMError(f"{where} is not JSON ({err.msg}); {JSONL_FIX}") from err
    if not isinstance(record, dict):
        raise LyricLMError(f"{where} is not a JSON object; {JSONL_FIX}")
    text = next((record[k] for k in ("text", "lyrics") if isinstance(record.get(k), str)), None)
    if text is None:
        raise LyricLMError(f'{where} has no "text" (or "lyrics") string; {JSONL_FIX}')
    completion = record.get("completion")
    return {"text": text, "completion": completion if isinstance(completion, str) else text}


def check_output_dir(out: Path) -> None:
    """Refuse, before any work, an output_dir that evaluate cannot fill without touching a user's files: a file, or
    a folder holding anything evaluate does not write. An earlier evaluation's folder is written over."""
    if out.exists() and not out.is_dir():
        raise LyricLMError(f"output_dir={out} is a file; give a folder for metrics.json, report.md and samples.jsonl")
    theirs = sorted(p.name for p in out.iterdir() if not is_eval_file(p.name)) if out.is_dir() else []
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
        raise LyricLMError(
            f"output_dir={out} holds files evaluate did not write ({shown}); give a new or empty folder as output_dir="
        )


def is_eval_file(name: str) -> bool:
    """A name evaluate writes into output_dir, or a temporary file of atomic_write's left by a killed evaluation."""
    return name in EVAL_FILES or (name.startswith(".") and name.endswith(".tmp"))


def write_report(out: Path, metrics: Mapping[str, Any], report: str) -> None:
    """metrics.json and report.md into `out`, each whole or not at all."""
    with user_write_errors(out, WRITE_FIX):
        out.mkdir(parents=True, exist_ok=True)
    for name, text in (("metrics.json", json.dumps(metrics, indent=2) + "\n"), ("report.md", report)):
        with atomic_write(out / name, WRITE_FIX) as f:
            f.write(text.encode("utf-8"))


def check_data_path(data_path: str, fmt: str | None = None) -> None:
    """A local data_path that does not exist, named as the user typed it, found before any work."""
    local = fmt != "hub" and not any(c in str(data_path) for c in "*?[")
    if local and not Path(data_path).expanduser().exists():
        raise LyricLMError(f"data_path={data_path} does not exist; give a lyrics file or folder, or leave it unset")


def data_of_run(ckpt_path: str, data_path: str | None) -> dict[str, Any]:
    """The `data` settings the checkpoint's run trained with (from its run dir or the checkpoint's manifest); the
    data module's defaults (the builtin sample) for a checkpoint that carries none."""
    run_cfg = run_config_of(ckpt_path)
    data = dict(run_cfg["data"]) if run_cfg is not None and run_cfg.get("data") is not None else {}
    if data_path:
        check_data_path(data_path, data.get("format"))
        data["path"] = data_path
    return data


def held_out_and_training(datamodule, data: Mapping[str, Any]) -> tuple[str, Any, list[str], list[str]]:
    """(split name, its DataLoader, its songs' texts, the training songs' texts): the test split when the data has
    one (`data.test_fraction`), else validation."""
    datamodule.setup("test")
    if data.get("test_fraction"):
        split, loader = "test", datamodule.test_dataloader()
    else:
        split, loader = "val", datamodule.val_dataloader()
    return split, loader, list(datamodule.song_texts(split)["text"]), list(datamodule.song_texts("train")["text"])


def songs_of(data_path: str) -> list[str]:
    """Every song of a lyrics file or folder, read and cleaned as training reads them with the data group's
    defaults (the format from the file names; no split: all of them)."""
    disable_progress_bars()  # a bar per map, for a few seconds' work
    with tempfile.TemporaryDirectory() as work:  # datasets' Arrow files, gone with it
        songs, _ = clean_songs(read_songs(data_path, cache_dir=work), CleanOptions(), where=str(data_path))
        return list(songs["text"])
