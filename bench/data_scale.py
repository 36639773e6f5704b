"""Data at scale: generate an N-song lyrics CSV, run it through LyricsDataModule twice, report songs/s and peak RSS.

    python bench/data_scale.py --songs 1000000      # ~1 GB CSV; writes the data_scale section of BENCHMARKS.md

Each run is a fresh Python process (so its peak RSS is its own): the first reads, cleans, splits, tokenizes (GPT-2's
tokenizer) and packs into the cache; the second must find the cache and skip all of that. Peak RSS is the largest
resident set of the run's main process and of any of its `num_proc` worker processes (ru_maxrss).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lyric_lm, as when run from the repository root
BEGIN, END = "<!-- BEGIN data_scale -->", "<!-- END data_scale -->"

# Made-up words for made-up songs: ~1 KB of lyrics per song, so 1M songs is a ~1 GB CSV.
WORDS = [
    "road",
    "river",
    "morning",
    "lantern",
    "paper",
    "harbour",
    "engine",
    "kettle",
    "willow",
    "thunder",
    "silver",
    "orchard",
    "window",
    "ladder",
    "meadow",
    "candle",
    "sparrow",
    "canyon",
    "velvet",
    "compass",
    "garden",
    "railway",
    "copper",
    "blanket",
    "autumn",
    "island",
    "marble",
]
TAGS = ["[Verse 1]", "[Chorus]", "[Verse 2]", "[Bridge]"]


def write_corpus(path: Path, songs: int, seed: int = 0) -> None:
    """A CSV like the big public dumps (title, tag, artist, year, lyrics): quoted multi-line cells, CRLF rows, a few
    empty and NA lyrics, ~1% exact duplicates."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["title", "tag", "artist", "year", "lyrics"])
        previous = ""
        for i in range(songs):
            if i % 500 == 7:
                lyrics = "NA" if i % 1000 == 7 else ""
            elif i % 100 == 3:
                lyrics = previous
            else:
                stanzas = []
                for tag in TAGS:
                    lines = [" ".join(rng.choices(WORDS, k=rng.randint(4, 8))) for _ in range(4)]
                    stanzas.append(tag + "\n" + "\n".join(lines))
                lyrics = "\n\n".join(stanzas) + f"\n{i}Embed"
                previous = lyrics
            out.writerow(
                [
                    f"Song {i}",
                    rng.choice(["folk", "rock", "pop", "country"]),
                    f"Artist {i % 5000}",
                    2000 + i % 25,
                    lyrics,
                ]
            )


class MemorySampler(threading.Thread):
    """Peaks of this process's anonymous memory (heap: what the code allocates) and file-backed resident pages
    (memory-mapped Arrow files, which the kernel drops under memory pressure), from /proc/self/status."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}

    def run(self) -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(value.split()[0]) // 1024)  # KiB -> MiB
            time.sleep(0.2)


def run_once(csv_path: str, cache: str, num_proc: int | None) -> dict:
    """One LyricsDataModule build (or cache hit) in this process; its timings and peak RSS as a dict."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lyric_lm.data import LyricsDataModule
    from lyric_lm.tokenizer import bundled_gpt2_tokenizer

    dm = LyricsDataModule(
        bundled_gpt2_tokenizer(), path=csv_path, block_size=1024, val_fraction=0.01, cache_dir=cache, num_proc=num_proc
    )
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    hit = (dm.cache_path / "summary.json").is_file()
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    seconds = time.perf_counter() - start
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = dm.summary["counts"]
    return {
        "cache_hit": hit,
        "seconds": round(seconds, 1),
        "songs_read": counts["read"],
        "songs_kept": counts["kept"],
        "songs_per_s": round(counts["read"] / seconds),
        "train_blocks": dm.summary["blocks"]["train"],
        "tokens": sum(dm.summary["blocks"].values()) * dm.block_size,
        "peak_rss_mib": round(max(rss_self, rss_children)),
        "peak_rss_main_mib": round(rss_self),
        "peak_rss_workers_mib": round(rss_children),
        "peak_anon_main_mib": sampler.peak["RssAnon"],
        "peak_file_main_mib": sampler.peak["RssFile"],
        "batch_shape": list(batch["input_ids"].shape),
    }


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=None, help="where the CSV and the cache go (default: a temporary dir)")
    parser.add_argument("--num-proc", type=int, default=None, help="data.num_proc (default: the module's own)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--run", nargs=2, metavar=("CSV", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print("RESULT " + json.dumps(run_once(*args.run, args.num_proc)), flush=True)
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lyric_lm_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path, cache = work / f"songs_{args.songs}.csv", work / "cache"
    start = time.perf_counter()
    if not csv_path.exists():
        write_corpus(csv_path, args.songs)
    print(f"corpus: {csv_path} {csv_path.stat().st_size / 1e9:.2f} GB ({time.perf_counter() - start:.0f} s)")
    results = []
    for _ in range(2):
        cmd = [sys.executable, __file__, "--run", str(csv_path), str(cache)]
        if args.num_proc is not None:
            cmd += ["--num-proc", str(args.num_proc)]
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        sys.stderr.write(proc.stderr[-3000:])
        if proc.returncode:
            sys.exit(f"run failed with exit code {proc.returncode}")
        result = json.loads(re.search(r"^RESULT (.*)$", proc.stdout, re.M).group(1))
        print(json.dumps(result))
        results.append(result)
    cold, warm = results
    if cold["cache_hit"] or not warm["cache_hit"]:
        sys.exit("the first run should build the cache and the second should find it")
    table = report(args.songs, csv_path.stat().st_size, du(cache), cold, warm)
    print(table)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", table)


def row(name: str, what: str, r: dict) -> str:
    return (
        f"| {name} | {what} | {r['seconds']:,} s | {r['songs_per_s']:,} | {r['peak_rss_main_mib']:,} MiB | "
        f"{r.get('peak_anon_main_mib', '?'):,} / {r.get('peak_file_main_mib', '?'):,} MiB | "
        f"{r.get('peak_rss_workers_mib', 0):,} MiB |"
    )


def report(songs: int, csv_bytes: int, cache_bytes: int, cold: dict, warm: dict) -> str:
    cpus = os.cpu_count()
    return f"""{BEGIN}
## Data at scale (`bench/data_scale.py`)

`python bench/data_scale.py --songs {songs}` generates a {csv_bytes / 1e9:.2f} GB CSV of {songs:,} made-up songs
(`title, tag, artist, year, lyrics`; quoted multi-line cells, empty and `NA` rows, ~1% duplicates) and runs it
through `LyricsDataModule` (GPT-2 tokenizer, `block_size=1024`, packing, default `num_proc`) in a fresh process,
twice. Machine: {cpus} CPU cores ({platform.processor() or platform.machine()}), shared with other jobs while measured,
so the times are pessimistic.

| run | what it does | time | songs/s | peak RSS | of which anon / file-backed | peak RSS of a worker |
|---|---|---|---|---|---|---|
{row("first", "read, clean, dedupe, split, tokenize, pack, write cache", cold)}
{row("second", "cache hit: memory-map the cache", warm)}

Kept {cold["songs_kept"]:,} of {cold["songs_read"]:,} songs; {cold["tokens"]:,} tokens in
{cold["train_blocks"]:,} training blocks; the cache takes {cache_bytes / 1e9:.2f} GB on disk. Peak RSS is the main
process's (ru_maxrss); "anon" is the memory the code allocates, "file-backed" the resident pages of memory-mapped
Arrow files it has read, which the kernel reclaims under memory pressure (both sampled from /proc/self/status).
{END}"""


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (or append it), leaving the other sections alone."""
    from lyric_lm.markdown import replace_section

    replace_section(path, BEGIN, END, section)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
