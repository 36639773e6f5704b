"""Lyric-quality metrics (pure functions), and evaluate.py: held-out perplexity + metrics of sampled songs.

Words are lowercase runs of letters, digits and apostrophes; lines are the non-empty lines that are not section tags
like `[Chorus]` or header lines like `genre: folk`; stanzas are separated by blank lines.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from lyric_lm.console import progress_bar, quiet_libraries
from lyric_lm.data import LyricsDataModule
from lyric_lm.errors import LyricLMError
from lyric_lm.run.files import user_write_errors
from lyric_lm.songs.loading import global_step_of, hf_model_of, load_checkpoint, run_config_of, run_dir_of
from lyric_lm.songs.sampling import Sampling, SongProgress, generate_songs, header_order, read_prompts, write_jsonl
from lyric_lm.tokenizer import load_tokenizer

WORD = re.compile(r"[a-z0-9']+")
SECTION_TAG = re.compile(r"^\s*\[[^\]]*\]\s*$")
HEADER_LINE = re.compile(r"^[a-z_]+:\s")
VOWELS = re.compile(r"[aeiouy]+")


def words(text: str) -> list[str]:
    return [w.strip("'") for w in WORD.findall(text.lower()) if w.strip("'")]


def stanzas(text: str) -> list[list[str]]:
    """The lyric lines of each stanza (section tags and header lines dropped, empty stanzas skipped)."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip() and not SECTION_TAG.match(ln)]
        lines = [ln for ln in lines if not HEADER_LINE.match(ln)]
        if lines:
            out.append(lines)
    return out


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


def rhyme_key(word: str) -> str:
    """The spelling of a word's last syllable rhyme: its last vowel group and what follows.

    A heuristic for English spelling, no pronunciation dictionary: a final silent `e` after a consonant is
    dropped first (fire -> fir -> "ir", desire -> "ir"), and `y` counts as a vowel (day/away -> "ay").
    night/light -> "ight", voice/choice -> "oic", town/down -> "own". It misses rhymes spelled differently
    (through/blue) and takes some eye rhymes (love/move) for rhymes.
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if len(w) > 2 and w.endswith("e") and w[-2] not in "aeiouy":
        w = w[:-1]
    groups = list(VOWELS.finditer(w))
    return w[groups[-1].start() :] if groups else ""


def rhymes(a: str, b: str) -> bool:
    """Two different words whose rhyme keys match (a word does not rhyme with itself)."""
    ka = rhyme_key(a)
    return bool(ka) and a.lower() != b.lower() and ka == rhyme_key(b)


def end_rhyme_rate(texts: Iterable[str], window: int = 2) -> float:
    """Share of lines (after a stanza's first) whose last word rhymes with one of the `window` lines before it.

    Couplets (AABB) and alternating rhyme (ABAB) both count with window=2: in a 4-line AABB stanza lines 2 and 4
    rhyme, so the rate is 2/3; an unrhymed stanza gives 0.
    """
    total = hits = 0
    for text in texts:
        for stanza in stanzas(text):
            ends = [ws[-1] for ws in (words(line) for line in stanza) if ws]
            for i in range(1, len(ends)):
                total += 1
                hits += any(rhymes(ends[i], ends[j]) for j in range(max(0, i - window), i))
    return hits / total if total else 0.0


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


def lyric_metrics(generated: Sequence[str], training: Sequence[str], n: int = 8) -> dict[str, Any]:
    """Every lyric-quality figure of a set of generated songs."""
    return {
        "songs": len(generated),
        "distinct_1": distinct_n(generated, 1),
        "distinct_2": distinct_n(generated, 2),
        "repeated_line_rate": repeated_line_rate(generated),
        **line_stats(generated),
        "end_rhyme_rate": end_rhyme_rate(generated),
        "memorisation": memorisation(generated, training, n),
    }


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


def report_markdown(metrics: Mapping[str, Any], songs: Sequence[str]) -> str:
    """metrics.json as a readable page, followed by a few of the generated songs."""
    mem = metrics["generation"]["memorisation"]
    gen = metrics["generation"]
    rows = [
        (
            f"perplexity ({metrics['eval_split']} split, {metrics['perplexity']['tokens']} tokens)",
            f"{metrics['perplexity']['ppl']:.2f}",
        ),
        ("distinct-1 / distinct-2", f"{gen['distinct_1']:.3f} / {gen['distinct_2']:.3f}"),
        ("repeated-line rate", f"{gen['repeated_line_rate']:.3f}"),
        ("mean words per line", f"{gen['mean_line_words']:.2f}"),
        ("mean lines per stanza", f"{gen['mean_stanza_lines']:.2f}"),
        ("end-rhyme rate (window 2)", f"{gen['end_rhyme_rate']:.3f}"),
        (f"generated {mem['ngram_n']}-grams in training", f"{mem['ngram_share']:.3f} of {mem['generated_ngrams']:,}"),
        ("longest span copied verbatim", f"{mem['longest_copied_words']} words"),
    ]
    lines = [
        f"# Evaluation of `{metrics['ckpt_path']}`",
        "",
        f"{gen['songs']} songs sampled with {json.dumps(metrics['sampling'])}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        f"Longest copied span: “{mem['longest_copied']}”",
        "",
        "## Samples",
        "",
    ]
    for i, song in enumerate(songs[:5], 1):
        lines += [f"### Song {i}", "", "```text", song.strip(), "```", ""]
    return "\n".join(lines)


# ---- evaluate.py: everything above applied to one checkpoint ----------------------------------------------------


def data_of_run(ckpt_path: str, data_path: str | None) -> dict[str, Any]:
    """The `data` settings the checkpoint's run trained with (from its run dir or the checkpoint's manifest); the
    data module's defaults (the builtin sample) for a checkpoint that carries none."""
    run_cfg = run_config_of(ckpt_path)
    data = dict(run_cfg["data"]) if run_cfg is not None and run_cfg.get("data") is not None else {}
    if data_path:
        # Named as the user typed it (data_path=, not the run's data.path), and found before any sampling.
        local = data.get("format") != "hub" and not any(c in str(data_path) for c in "*?[")
        if local and not Path(data_path).expanduser().exists():
            raise LyricLMError(f"data_path={data_path} does not exist; give a lyrics file or folder, or leave it unset")
        data["path"] = data_path
    return data


def held_out_and_training(datamodule, data: Mapping[str, Any]) -> tuple[str, Any, list[str]]:
    """(split name, its DataLoader, the training songs' texts): the test split when the data has one
    (`data.test_fraction`), else validation."""
    datamodule.setup("test")
    if data.get("test_fraction"):
        split, loader = "test", datamodule.test_dataloader()
    else:
        split, loader = "val", datamodule.val_dataloader()
    return split, loader, list(datamodule.song_texts("train")["text"])


def evaluate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """evaluate.py: perplexity on held-out songs, lyric metrics of sampled songs; metrics.json, report.md, TB.

    Each phase says on stderr that it starts, the long ones with a bar; stdout gets the report and where it went.
    """
    quiet_libraries()
    sampling = Sampling.from_config(cfg)
    ngram = cfg.get("ngram", 8)
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
        raise LyricLMError(f"ngram={ngram} is out of range; ngram must be a whole number, at least 1")
    prompts = read_prompts(cfg.get("prompt"), cfg.get("prompt_file"))
    ckpt_path = cfg.get("ckpt_path")
    module = load_checkpoint(ckpt_path)  # its errors first, as the one line: nothing is printed before them
    out = Path(cfg.get("output_dir") or run_dir_of(ckpt_path) / "eval").expanduser()
    if out.exists() and not out.is_dir():  # found now, not after minutes of sampling
        raise LyricLMError(f"output_dir={out} is a file; give a folder for metrics.json, report.md and samples.jsonl")
    data = data_of_run(ckpt_path, cfg.get("data_path"))
    phase(f"loaded checkpoint {ckpt_path}")
    model_cfg = module.hparams["model"]
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("tokenizer"))
    model = hf_model_of(module)

    phase(f"reading lyrics from {data.get('path')}")
    datamodule = LyricsDataModule(tokenizer=tokenizer, **data)
    split, loader, train_texts = held_out_and_training(datamodule, data)
    phase(f"perplexity on {len(loader.dataset)} held-out blocks ({split} split)")
    ppl = token_perplexity(model, progress_bar(loader, desc="perplexity", unit="batch"))

    header = {field: cfg.get(field) for field in header_order(cfg.get("ckpt_path"), None)}
    phase(f"sampling {len(prompts) * sampling.num_samples} songs")
    records = generate_songs(model, tokenizer, prompts, sampling, header, SongProgress(bar=True))
    phase(f"memorisation against {len(train_texts)} training songs")
    gen = lyric_metrics([r["text"] for r in records], train_texts, ngram)
    # Memorisation counts only what the model wrote, not the prompt it was given.
    gen["memorisation"] = memorisation([r["completion"] for r in records], train_texts, ngram)
    step = global_step_of(ckpt_path)
    metrics = {
        "ckpt_path": str(ckpt_path),
        "global_step": step,
        "eval_split": split,
        "perplexity": ppl,
        "sampling": asdict(sampling),
        "prompts": prompts,
        "generation": gen,
    }

    phase(f"writing the report to {out}")
    report = report_markdown(metrics, [r["text"] for r in records])
    with user_write_errors(out, "free some space or give another output_dir="):
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(records, out / "samples.jsonl")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (out / "report.md").write_text(report, encoding="utf-8")
        writer = SummaryWriter(str(out / "tensorboard"))
        for name, value in scalar_metrics(metrics).items():
            writer.add_scalar(name, value, global_step=step or 0)
        writer.add_text("eval/report", report, global_step=step or 0)
        writer.close()
    print(report.split("\n## Samples")[0])
    print(f"wrote {out / 'metrics.json'}, report.md, samples.jsonl and tensorboard/")
    print(headline(metrics))
    return metrics


def phase(message: str) -> None:
    """A line on stderr as a phase of evaluate.py starts (stdout keeps the report alone)."""
    print(message, file=sys.stderr, flush=True)


def headline(metrics: Mapping[str, Any]) -> str:
    """The figures to read first, in one line: `val ppl 42.17 | distinct-2 0.853 | 8-grams copied 0.012`."""
    gen, mem = metrics["generation"], metrics["generation"]["memorisation"]
    return (
        f"{metrics['eval_split']} ppl {metrics['perplexity']['ppl']:.2f} | distinct-2 {gen['distinct_2']:.3f} | "
        f"{mem['ngram_n']}-grams copied {mem['ngram_share']:.3f} | end-rhyme rate {gen['end_rhyme_rate']:.3f}"
    )


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of metrics.json under TensorBoard tags: eval/<split>_ppl, eval/distinct_1, ..."""
    gen, mem = metrics["generation"], metrics["generation"]["memorisation"]
    return {
        f"eval/{metrics['eval_split']}_loss": metrics["perplexity"]["loss"],
        f"eval/{metrics['eval_split']}_ppl": metrics["perplexity"]["ppl"],
        **{f"eval/{k}": gen[k] for k in ("distinct_1", "distinct_2", "repeated_line_rate", "end_rhyme_rate")},
        **{f"eval/{k}": gen[k] for k in ("mean_line_words", "mean_stanza_lines")},
        "eval/memorised_ngram_share": mem["ngram_share"],
        "eval/longest_copied_words": mem["longest_copied_words"],
    }
