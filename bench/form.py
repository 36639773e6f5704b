"""Form-following generation, measured: rhyme and syllables kept, time per song and perplexity, with and without.

    python bench/form.py                       # trains the quickstart model first (~2-15 min on 2 CPU cores)
    python bench/form.py --ckpt <run>/checkpoints/last.ckpt --songs 24

For each seed 0..songs-1 one song per setting, the settings interleaved so a busy machine slows them alike:
free sampling (generate.py's defaults), and songs asked for AABB and ABAB, 8 syllables +- 1, 3 stanzas
(form_sampling: steered candidate lines, re-ranked), plus AABB with the candidates re-ranked but not steered. Every
song is measured by the CMU dictionary (form_sampling.form_kept): the share of line pairs the scheme asks to rhyme
that rhyme perfectly (where both end words are in the dictionary), and of lines within 8 +- 1 syllables; free songs
against AABB. Perplexity: the model's mean per-token NLL over each song's new tokens, after the end-of-text token.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lyric_lm, as when run from the repository root
BEGIN, END = "<!-- BEGIN form -->", "<!-- END form -->"
COLUMNS = ["setting", "rhyme pairs kept", "lines within 8+-1", "time per song (x free as long)", "tokens per song"]
COLUMNS += ["time per token (x free)", "perplexity", "perplexity of lyric lines"]
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|"

from lyric_lm.console import quiet_libraries  # noqa: E402
from lyric_lm.songs.form import is_lyric_line  # noqa: E402
from lyric_lm.songs.form_sampling import Form, form_kept, form_vocab, write_song  # noqa: E402
from lyric_lm.songs.loading import load_for_generation  # noqa: E402
from lyric_lm.songs.sampling import Sampling, generate_songs  # noqa: E402


@dataclass(frozen=True)
class Setting:
    name: str
    form: Form | None  # None: free sampling
    yardstick: Form  # the form the songs are measured against
    steer: bool = True
    as_long_as: str | None = None  # free sampling: each song exactly as many tokens as this setting's song


AABB = Form(rhyme_scheme="AABB", syllables=8, syllable_tolerance=1, stanzas=3)
ABAB = Form(rhyme_scheme="ABAB", syllables=8, syllable_tolerance=1, stanzas=3)


def settings(candidates: int) -> list[Setting]:
    aabb = Form(**{**AABB.__dict__, "candidates": candidates})
    abab = Form(**{**ABAB.__dict__, "candidates": candidates})
    first = f"AABB, 8+-1 syllables, 3 stanzas, {candidates} candidates, steered"
    return [
        Setting("free sampling (generate.py's defaults)", None, AABB),
        Setting(first, aabb, AABB),
        Setting("free sampling, each song as many tokens as the AABB one", None, AABB, as_long_as=first),
        Setting(f"ABAB, 8+-1 syllables, 3 stanzas, {candidates} candidates, steered", abab, ABAB),
        Setting(f"AABB, 8+-1 syllables, 3 stanzas, {candidates} candidates, re-ranked, unsteered", aabb, AABB, False),
    ]


def train_quickstart(work: Path) -> Path:
    """`python train.py experiment=quickstart` in `work`; its last checkpoint."""
    run = work / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "experiment=quickstart", f"hydra.run.dir={run}"]
    print(f"training: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=work, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return run / "checkpoints" / "last.ckpt"


@torch.no_grad()
def song_nll(model, tokenizer, text: str) -> tuple[float, int, float, int]:
    """(summed NLL, tokens) of a song's tokens after the end-of-text token, in windows of the model's context; then
    the same over the tokens of its lyric lines alone (each line's words and line break: no tags, no blank lines)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tokenizer.eos_token_id] + enc["input_ids"]
    in_lyrics = torch.zeros(len(ids), dtype=torch.bool)  # by the token's first character
    start = 0
    for line in text.split("\n"):
        end = start + len(line) + 1  # its line break included
        if is_lyric_line(line):
            in_lyrics[1:] |= torch.tensor([start <= a < end for a, _ in enc["offset_mapping"]])
        start = end
    context = model.config.max_position_embeddings
    nll = torch.zeros(len(ids))  # nll[i]: of token i given those before it
    for first in range(0, len(ids) - 1, context - 1):
        window = torch.tensor([ids[first : first + context]])
        logits = model(window).logits[0, :-1]
        nll[first + 1 : first + window.shape[1]] = torch.nn.functional.cross_entropy(
            logits, window[0, 1:], reduction="none"
        )
    return nll[1:].sum().item(), len(ids) - 1, nll[in_lyrics].sum().item(), int(in_lyrics.sum())


def sample(model, tokenizer, setting: Setting, seed: int, tokens: int | None = None) -> tuple[str, float]:
    """(song text, seconds) for one seed; free sampling of exactly `tokens` new tokens if given."""
    start = time.perf_counter()
    if setting.form is None:
        # Without `tokens`: generate.py's max_new_tokens, cut to the context after the end-of-text token (as it is).
        limit = min(Sampling().max_new_tokens, model.config.max_position_embeddings - 1)
        length = {"max_new_tokens": tokens, "min_new_tokens": tokens} if tokens else {"max_new_tokens": limit}
        [rec] = generate_songs(model, tokenizer, [""], Sampling(seed=seed, **length))
        text = rec["text"]
    else:
        config = Sampling(seed=seed).generation_config(tokenizer)
        with torch.random.fork_rng():
            text = write_song(model, tokenizer, "", setting.form, config, seed, steer=setting.steer)
    return text, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a trained checkpoint to reuse (default: train the quickstart model first)")
    parser.add_argument("--songs", type=int, default=24, help="songs per setting (seeds 0..songs-1)")
    parser.add_argument("--candidates", type=int, default=Form().candidates)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    ckpt = args.ckpt or str(train_quickstart(Path(tempfile.mkdtemp(prefix="lyric_lm_form_"))))
    model, tokenizer = load_for_generation(ckpt_path=ckpt)
    form_vocab(tokenizer)  # built once per tokenizer (a few seconds), not timed
    plan = settings(args.candidates)
    rows = {s.name: {"texts": [], "seconds": []} for s in plan}
    for seed in range(args.songs):
        for s in plan:
            like = rows[s.as_long_as]["texts"][-1] if s.as_long_as else None
            tokens = len(tokenizer(like, add_special_tokens=False)["input_ids"]) if like else None
            text, seconds = sample(model, tokenizer, s, seed, tokens)
            rows[s.name]["texts"].append(text)
            rows[s.name]["seconds"].append(seconds)
        print(f"seed {seed}: " + ", ".join(f"{rows[s.name]['seconds'][-1]:.1f} s" for s in plan), flush=True)
    results = [summarise(model, tokenizer, s, rows[s.name]) for s in plan]
    example = rows[plan[1].name]["texts"][0]  # the first AABB song
    table = report(args, ckpt, results, example, plan[1].yardstick)
    print(table)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", table)


def summarise(model, tokenizer, setting: Setting, row: dict) -> dict:
    judged = rhymed = lines = kept = 0
    nll = tokens = lyric_nll = lyric_tokens = 0.0
    for text in row["texts"]:
        m = form_kept(text, setting.yardstick)
        judged, rhymed = judged + m["rhyme_pairs"], rhymed + m["rhymed_pairs"]
        n = sum(m["stanza_lines"])
        lines, kept = lines + n, kept + round(m["syllables_kept_share"] * n)
        total, count, lyric_total, lyric_count = song_nll(model, tokenizer, text)
        nll, tokens = nll + total, tokens + count
        lyric_nll, lyric_tokens = lyric_nll + lyric_total, lyric_tokens + lyric_count
    seconds = sum(row["seconds"])
    return {
        "name": setting.name,
        "songs": len(row["texts"]),
        "rhyme": rhymed / judged if judged else float("nan"),
        "pairs": judged,
        "syllables": kept / lines if lines else float("nan"),
        "lines": lines,
        "s_per_song": seconds / len(row["texts"]),
        "s_median": statistics.median(row["seconds"]),
        "tokens_per_song": tokens / len(row["texts"]),
        "ms_per_token": 1000 * seconds / tokens,
        "ppl": math.exp(nll / tokens),
        "lyric_ppl": math.exp(lyric_nll / lyric_tokens),
    }


def report(args, ckpt: str, results: list[dict], example: str, yardstick: Form) -> str:
    free, same_length = results[0], results[2]
    lines = []
    for r in results:
        per_song, per_token = r["s_per_song"] / same_length["s_per_song"], r["ms_per_token"] / free["ms_per_token"]
        lines.append(
            f"| {r['name']} | {r['rhyme']:.0%} of {r['pairs']} | {r['syllables']:.0%} of {r['lines']} | "
            f"{r['s_per_song']:.2f} s ({per_song:.1f}x) | {r['tokens_per_song']:.0f} | "
            f"{r['ms_per_token']:.1f} ms ({per_token:.1f}x) | {r['ppl']:.0f} | {r['lyric_ppl']:.0f} |"
        )
    measured = form_kept(example, yardstick)
    reading = reading_of(results)
    example_block = "\n".join(example.strip().split("\n"))
    table = "\n".join(lines)
    return f"""{BEGIN}
## Form-following generation (`bench/form.py`)

`python bench/form.py --songs {args.songs}`: the quickstart model (`train.py experiment=quickstart`, tiny GPT-2 on
the builtin sample), one song per seed 0..{args.songs - 1} per setting, settings interleaved; torch
threads={args.threads}, {os.cpu_count()} CPU cores ({platform.machine()}) shared with other jobs while measured. Rhyme:
line pairs the scheme asks to rhyme (both end words in the CMU dictionary) that rhyme perfectly; free songs are
measured as AABB in groups of 4 lines. Syllables: lines within 8 +- 1. A song in form is timed against a free song of
as many tokens. Perplexity: the model's over each song, and over its lyric lines alone (without section tags).

{HEADER}
{table}

{reading}

The first AABB song (seed 0), as written; measured: {measured["rhymed_pairs"]}/{measured["rhyme_pairs"]} pairs rhyme,
{measured["syllables_kept_share"]:.0%} of lines within 8 +- 1, stanza schemes {", ".join(measured["stanza_schemes"])}:

```text
{example_block}
```
{END}"""


def reading_of(results: list[dict]) -> str:
    """The figures read against the targets: >= 90% of pairs and lines kept, <= 4x the time of free sampling."""
    free, same_length = results[0], results[2]
    steered, unsteered = [results[1], results[3]], results[4]
    rhyme, syllables = min(r["rhyme"] for r in steered), min(r["syllables"] for r in steered)
    per_song = max(r["s_per_song"] for r in steered) / same_length["s_per_song"]
    per_token = max(r["ms_per_token"] for r in steered) / free["ms_per_token"]
    met = rhyme >= 0.9 and syllables >= 0.9 and per_song <= 4 and per_token <= 4
    low, high = min(r["lyric_ppl"] for r in steered), max(r["lyric_ppl"] for r in steered)
    ppl = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"
    text = (
        f"Reading: with the controls at least {rhyme:.0%} of the asked pairs rhyme and {syllables:.0%} of lines keep "
        f"8 +- 1 syllables (free songs: {free['rhyme']:.0%} and {free['syllables']:.0%}), at {per_song:.1f}x the "
        f"time of a free song as long and {per_token:.1f}x the time per token of free sampling: targets (90%, 4x) "
        f"{'met' if met else 'NOT met'}. Re-ranking the same candidates unsteered keeps {unsteered['rhyme']:.0%} "
        f"of the pairs and {unsteered['syllables']:.0%} of the lines: the steering of end words does the work. "
        f"Perplexity of the lyric lines under the model: {ppl} in form, {free['lyric_ppl']:.0f} for its free songs "
        "(fewer candidates cost less and read worse: `candidates=`)."
    )
    return textwrap.fill(text, width=118)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (or append it), leaving the other sections alone."""
    from lyric_lm.markdown import replace_section

    replace_section(path, BEGIN, END, section)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
