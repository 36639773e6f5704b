"""Train/validation/test splits by song or by artist, before tokenizing, so no song is in two splits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from lyric_lm.errors import LyricLMError


def split_groups(songs: Dataset, by: str) -> np.ndarray:
    """A group id per song: each song its own group (`song`), or one group per artist (`artist`).

    Artists compare case- and space-insensitively; a song without an artist is a group of its own.
    """
    if by == "song":
        return np.arange(len(songs))
    if by != "artist":
        raise LyricLMError(f"data.split_by={by} is not song or artist")
    artist = songs.select_columns(["artist"]).with_format("arrow")[:]["artist"]  # honours a select()'s indices
    if artist.null_count == len(songs):
        raise LyricLMError("data.split_by=artist needs an artist column, and this corpus has none; use split_by=song")
    names = pc.utf8_lower(pc.utf8_trim_whitespace(artist))
    names = pc.if_else(pc.equal(names, ""), pa.scalar(None, pa.string()), names)
    codes = pc.fill_null(pc.dictionary_encode(names).combine_chunks().indices, -1).to_numpy(zero_copy_only=False)
    n_artists = int(codes.max()) + 1
    lone = codes < 0
    codes = codes.astype(np.int64)
    codes[lone] = n_artists + np.arange(lone.sum())
    return codes


def split_songs(
    songs: Dataset,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 1234,
    by: str = "song",
    few_songs_hint: str = "add songs",
) -> DatasetDict:
    """`train`, `val` (and `test` if `test_fraction` > 0): seeded shuffles of whole groups (songs or artists).

    Each held-out split takes groups until it holds its fraction of the songs, so a split by artist may hold a few
    songs more than the fraction. `few_songs_hint` ends the error for a split left empty (what the user can do).
    """
    n = len(songs)
    groups = split_groups(songs, by)
    sizes = np.bincount(groups)
    order = np.random.default_rng(seed).permutation(len(sizes))
    cum = np.cumsum(sizes[order])
    bounds = []
    start = 0
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        target = round(fraction * n)
        end = start if target == 0 else int(np.searchsorted(cum, (cum[start - 1] if start else 0) + target)) + 1
        bounds.append((name, fraction, start, min(end, len(order))))
        start = min(end, len(order))
    assignment = np.zeros(len(sizes), dtype=np.int8)  # 0 train, 1 val, 2 test
    for code, (_, _, lo, hi) in enumerate(bounds, start=1):
        assignment[order[lo:hi]] = code
    per_song = assignment[groups]
    parts = {}
    for code, name in enumerate(("train", "val", "test")):
        fraction = {"val": val_fraction, "test": test_fraction}.get(name, 1.0)
        idx = np.flatnonzero(per_song == code)  # sorted: each split reads the Arrow file front to back
        if name == "test" and fraction == 0:
            continue
        if len(idx) == 0:
            of = f"{n} songs by {len(sizes)} artists" if by == "artist" else f"{n} songs"
            raise LyricLMError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} of {of} leave the {name} "
                f"split empty; use fractions that give every split at least one song, or {few_songs_hint}"
            )
        parts[name] = songs.select(idx)
    return DatasetDict(parts)
