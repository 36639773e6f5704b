"""LyricsDataModule: read, clean and split songs, tokenize them once into an on-disk cache, batch blocks from it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pyarrow.compute as pc
import torch
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    List,
    Value,
    disable_progress_bars,
    enable_progress_bars,
    load_from_disk,
)
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from lyric_lm.data.cache import SUMMARY, discard, entry_problem, make_temp_dir, remove_stale_temp_dirs, write_summary
from lyric_lm.data.cleaning import CleanOptions, clean_songs, summary_line, warn_outsized_song
from lyric_lm.data.packing import collate_blocks, pack_blocks, pad_songs, tokenize_songs
from lyric_lm.data.reading import METADATA, SONG_SEPARATOR, read_songs, resolve_files
from lyric_lm.data.splitting import split_songs
from lyric_lm.errors import LyricLMError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cache's layout or the cleaning/tokenizing code changes what it holds
PACKED = Features({"input_ids": List(Value("int32"))})
PADDED = Features(
    {"input_ids": List(Value("int32")), "labels": List(Value("int32")), "attention_mask": List(Value("int8"))}
)
BIG_INPUT = 50 << 20  # bytes of input above which `datasets` shows its progress bars


def default_cache_dir() -> Path:
    """$LYRIC_LM_CACHE, else ~/.cache/lyric_lm."""
    return Path(os.environ.get("LYRIC_LM_CACHE") or Path.home() / ".cache" / "lyric_lm").expanduser()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normalisation), not only its name."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else f"{type(tokenizer).__name__}:{tokenizer.name_or_path}"
    spec += f"|eos={tokenizer.eos_token_id}|pad={tokenizer.pad_token_id}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


class LyricsDataModule(L.LightningDataModule):
    """Batches of token blocks from a lyrics corpus, tokenized once into a cache keyed by inputs and options.

    `prepare_data` (run once per machine by Lightning) reads, cleans, splits, tokenizes and packs into
    `<cache_dir>/<fingerprint>/`, written atomically; `setup` memory-maps it. Every argument but the tokenizer is a
    key of the `data` config group (conf/data/sample.yaml documents each).

    Args:
        tokenizer: the model's tokenizer (its EOS token ends each song).
        path: a file, a folder (read recursively), a glob, or a hub dataset id (format=hub); None: builtin sample.
        condition_on: metadata fields written as a header before each song (lyric_lm.data.conditioning).
        split_seed: seeds the split, independent of the run's seed so sweeps compare on one split.
    """

    def __init__(
        self,
        tokenizer,
        path: str | None = None,
        format: str = "auto",
        text_column: str | None = None,
        title_column: str | None = None,
        artist_column: str | None = None,
        genre_column: str | None = None,
        encoding: str = "utf-8",
        song_separator: str = SONG_SEPARATOR,
        hub_config: str | None = None,
        hub_split: str = "train",
        clean: dict[str, Any] | None = None,
        language: str | None = None,
        min_chars: int = 1,
        max_chars: int | None = None,
        max_songs: int | None = None,
        condition_on: Sequence[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        split_by: str = "song",
        split_seed: int = 1234,
        packing: bool = True,
        stride: int | None = None,
        block_size: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        num_proc: int | None = None,
        map_batch_size: int = 1000,
        cache_dir: str | None = None,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.path = path
        self.format = format
        self.columns = {"text": text_column, "title": title_column, "artist": artist_column, "genre": genre_column}
        self.encoding = encoding
        self.song_separator = str(song_separator or "").strip()
        if not self.song_separator or "\n" in self.song_separator:
            raise LyricLMError(
                f"data.song_separator={song_separator!r} must be one line of text, e.g. data.song_separator=---"
            )
        self.hub = {"config": hub_config, "split": hub_split}
        self.clean = CleanOptions.from_config(clean)
        self.filters = {"language": language, "min_chars": min_chars, "max_chars": max_chars, "max_songs": max_songs}
        self.condition_on = list(condition_on or [])
        unknown = set(self.condition_on) - set(METADATA)
        if unknown:
            raise LyricLMError(f"data.condition_on has {', '.join(sorted(unknown))}; use some of {list(METADATA)}")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_by = split_by
        self.split_seed = split_seed
        self.packing = packing
        self.stride = block_size if stride is None else stride
        if not 0 < self.stride <= block_size:
            raise LyricLMError(f"data.stride={stride} must be between 1 and data.block_size={block_size}")
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.map_batch_size = map_batch_size
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._fingerprint: str | None = None
        self.blocks: DatasetDict | None = None
        self.songs: DatasetDict | None = None
        self.summary: dict[str, Any] = {}

    # -- the cache key ------------------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """Hash of the inputs (each file's path, size and modification time, or the hub id) and of every option
        that changes the tokenized data (tokenizer, cleaning, filters, splits, conditioning, block_size, packing)."""
        if self._fingerprint is None:
            if self.format == "hub":
                inputs: Any = {"hub": self.path, **self.hub}
            else:
                paths, _ = resolve_files(self.path, self.format)
                inputs = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
            key = {
                "version": CACHE_VERSION,
                "inputs": inputs,
                "format": self.format,
                "columns": self.columns,
                "encoding": self.encoding,
                "song_separator": self.song_separator,
                "tokenizer": tokenizer_fingerprint(self.tokenizer),
                "clean": self.clean.as_dict(),
                "filters": self.filters,
                "condition_on": self.condition_on,
                "split": [self.val_fraction, self.test_fraction, self.split_by, self.split_seed],
                "blocks": [self.block_size, self.packing, self.stride],
            }
            self._fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self._fingerprint

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / self.fingerprint

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "the builtin sample"

    # -- building the cache -------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the tokenized cache unless a whole identical one exists (a damaged one is rebuilt); a failure
        leaves no partial cache behind."""
        final = self.cache_path
        remove_stale_temp_dirs(self.cache_dir)
        if final.exists():
            problem = entry_problem(final)
            if problem is None:
                log.info("data: cache hit, %s (tokenization skipped)", final)
                return
            self._discard_damaged(problem)
        tmp = make_temp_dir(self.cache_dir, self.fingerprint)
        try:
            self._build(tmp / "work", tmp / "out")
            try:
                (tmp / "out").rename(final)  # atomic on one filesystem: readers see all of it or nothing
            except OSError:
                if entry_problem(final) is not None:  # not another run finishing first: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _discard_damaged(self, problem: str) -> None:
        """Move the damaged entry aside and delete it. Runs that find the same damage at once: one moves it, the
        others find it gone; each then builds, and the first finished entry stays."""
        log.warning("data: cache %s is damaged (%s); rebuilding", self.cache_path, problem)
        try:
            discard(self.cache_path)
        except FileNotFoundError:
            pass
        except OSError as err:  # e.g. Windows, where files another process has open cannot be moved
            raise LyricLMError(
                f"the damaged data cache {self.cache_path} could not be removed ({err}); delete that folder by hand"
            ) from err

    def _build(self, work: Path, out: Path) -> None:
        fmt = self.format
        if fmt != "hub":
            paths, fmt = resolve_files(self.path, self.format)
            big = sum(p.stat().st_size for p in paths) > BIG_INPUT
            enable_progress_bars() if big else disable_progress_bars()  # small corpora: bars only clutter the log
        raw = read_songs(self.path, self.format, **self._read_args(), cache_dir=work)
        num_proc = self._num_proc(len(raw))
        songs, counts = clean_songs(raw, self.clean, **self.filters, num_proc=num_proc, where=self.where)
        log.info("data: %s", summary_line(counts, self.where))
        warn_outsized_song(songs)
        # Too few songs to split is often a text file whose songs are parted by another line than the separator.
        few = "add songs"
        if fmt == "text":
            few += f", or set data.song_separator (now {self.song_separator}) to the line between a file's songs"
        splits = split_songs(songs, self.val_fraction, self.test_fraction, self.split_seed, self.split_by, few)
        blocks = self._tokenize(splits, num_proc)
        summary: dict[str, Any] = {"counts": counts, "fingerprint": self.fingerprint, "songs": {}, "blocks": {}}
        for split, ds in blocks.items():
            summary["songs"][split] = len(splits[split])
            summary["blocks"][split] = len(ds)
            if len(ds) == 0:
                raise LyricLMError(
                    f"the {split} split of {self.where} ({len(splits[split])} songs) is shorter than one block of "
                    f"{self.block_size} tokens; lower data.block_size, set data.packing=false, or add songs"
                )
            if not self.packing:
                mask = pc.list_flatten(ds.data.column("attention_mask"))
                summary.setdefault("padding_share", {})[split] = 1 - pc.sum(mask).as_py() / len(mask)
        if summary["blocks"]["train"] < self.batch_size:
            raise LyricLMError(
                f"{self.where} gives {summary['blocks']['train']} training blocks, fewer than one batch of "
                f"data.batch_size={self.batch_size}; lower data.batch_size or data.block_size, or add songs"
            )
        splits.save_to_disk(str(out / "songs"))
        blocks.save_to_disk(str(out / "blocks"))
        write_summary(out, summary)

    def _read_args(self) -> dict[str, Any]:
        return {
            **{f"{field}_column": column for field, column in self.columns.items()},
            "encoding": self.encoding,
            "song_separator": self.song_separator,
            "hub_config": self.hub["config"],
            "hub_split": self.hub["split"],
        }

    def _num_proc(self, n_rows: int) -> int | None:
        """data.num_proc, or by default one process per 100k rows up to the CPU count (processes cost ~1 s each)."""
        if self.num_proc is not None:
            return self.num_proc if self.num_proc > 1 else None
        n = min(os.cpu_count() or 1, n_rows // 100_000)
        return n if n > 1 else None

    def _tokenize(self, splits: DatasetDict, num_proc: int | None) -> DatasetDict:
        tokenized = splits.map(
            tokenize_songs,
            batched=True,
            batch_size=self.map_batch_size,
            num_proc=num_proc,
            remove_columns=splits["train"].column_names,
            features=Features({"input_ids": List(Value("int32"))}),
            fn_kwargs={
                "tokenizer": self.tokenizer,
                "eos_token_id": self.tokenizer.eos_token_id,
                "condition_on": self.condition_on,
            },
            desc="Tokenizing",
        )
        if self.packing:
            fn, features, kwargs = pack_blocks, PACKED, {"block_size": self.block_size}
        else:
            pad_id = self.tokenizer.pad_token_id
            pad_id = self.tokenizer.eos_token_id if pad_id is None else pad_id
            kwargs = {"block_size": self.block_size, "stride": self.stride, "pad_token_id": pad_id}
            fn, features = pad_songs, PADDED
        return tokenized.map(
            fn,
            batched=True,
            batch_size=self.map_batch_size,
            num_proc=num_proc,
            remove_columns=["input_ids"],
            features=features,
            fn_kwargs=kwargs,
            desc="Packing" if self.packing else "Padding",
        )

    # -- reading the cache --------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.blocks is not None:
            return
        if not self.cache_path.exists() or entry_problem(self.cache_path) is not None:
            self.prepare_data()  # called outside a Trainer, without prepare_data; or the cache broke meanwhile
        try:
            self._load()
        except (OSError, ValueError, KeyError) as err:  # damage the size checks cannot see; rebuild once
            self._discard_damaged(f"{type(err).__name__}: {err}".splitlines()[0])
            self.prepare_data()
            self._load()
        sizes = ", ".join(f"{s} {self.summary['songs'][s]:,} songs / {n:,} blocks" for s, n in self.blocks_per_split())
        log.info("data: %s [%s], blocks of %d tokens", sizes, self.cache_path, self.block_size)
        for split, share in self.summary.get("padding_share", {}).items():
            log.info("data: %s split is %.1f%% padding tokens (data.packing=false)", split, 100 * share)

    def _load(self) -> None:
        """Memory-map the cache entry; raises if a file is damaged or a split lacks rows the summary counts."""
        summary = json.loads((self.cache_path / SUMMARY).read_text())
        loaded = {name: load_from_disk(str(self.cache_path / name)) for name in ("songs", "blocks")}
        for name, splits in loaded.items():
            for split, ds in splits.items():
                if len(ds) != summary[name][split]:
                    raise ValueError(f"{name}/{split} holds {len(ds):,} rows of {summary[name][split]:,}")
        self.summary, self.songs, self.blocks = summary, loaded["songs"], loaded["blocks"].with_format("torch")

    def blocks_per_split(self) -> list[tuple[str, int]]:
        return [(split, len(ds)) for split, ds in self.blocks.items()]

    def song_texts(self, split: str = "train") -> Dataset:
        """The cleaned songs of a split (after dedupe, before tokenizing): columns `text` (the lyrics, without the
        conditioning header), `title`, `artist`, `genre`, `language`. Memory-mapped; iterate `ds["text"]` or in
        batches with `ds.iter(batch_size=...)`."""
        self.setup()
        if split not in self.songs:
            raise LyricLMError(f"there is no {split} split; its fraction (data.{split}_fraction) is 0")
        return self.songs[split]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.blocks:
            raise LyricLMError("the data has no test split; set data.test_fraction (e.g. 0.1)")
        return self._loader(self.blocks["test"], shuffle=False)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        # Stateful: Lightning saves its position in checkpoints, so a resumed run continues mid-epoch with the very
        # next batch. Two generators seeded by the run's seed, so that batching never draws from the global RNG
        # (dropout's) and the shuffle's generator serves the shuffle alone: every epoch's order and every dropout
        # mask are then the same in a resumed run as in an uninterrupted one.
        seed = torch.initial_seed()
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed)) if shuffle else None
        return StatefulDataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_blocks,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(seed + 1),
        )
