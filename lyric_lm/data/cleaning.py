"""Cleaning lyric corpora: text fixes, dropped rows (with the reason), exact duplicates, and the summary line."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, Value

from lyric_lm.errors import LyricLMError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanOptions:
    """What `data.clean` switches on; every rule is on by default except dropping section tags."""

    unicode: str | None = "NFC"  # unicodedata normal form (NFC, NFKC); null keeps the text as read
    line_endings: bool = True  # CRLF/CR -> LF; strip byte-order marks, zero-width characters, trailing spaces
    boilerplate: bool = True  # scraper residue: "123Embed", "You might also like", "N Contributors ... Lyrics"
    section_tags: bool = True  # keep lines like [Chorus]; false drops them
    collapse_blank_lines: bool = True  # runs of blank lines -> one, so stanza breaks stay and gaps go
    drop_empty: bool = True  # drop empty, NA and instrumental-only rows
    dedupe: bool = True  # drop exact duplicate songs (after the text fixes), keeping the first

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> CleanOptions:
        names = {f.name for f in fields(cls)}
        unknown = set(cfg or {}) - names
        if unknown:
            raise LyricLMError(f"data.clean has no option {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        opts = cls(**(cfg or {}))
        if opts.unicode not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise LyricLMError(f"data.clean.unicode={opts.unicode} is not NFC, NFKC, NFD, NFKD or null")
        return opts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NA_VALUES = {"na", "n/a", "nan", "null", "none", "#n/a"}
INSTRUMENTAL = re.compile(r"^\W*instrumental\W*$", re.IGNORECASE)
INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060]")
TRAILING_SPACE = re.compile(r"[ \t\u00a0]+(?=\n|$)")
# Genius page residue as it lands in scraped dumps: a "12 ContributorsTitle Lyrics" first line, "You might also
# like" glued before a tag or line, ticket adverts, and "123Embed" glued to the last word.
GENIUS_HEAD = re.compile(r"^\s*\d+\s*Contributors?[^\n]*?Lyrics(?=\[|\n|$)")
ALSO_LIKE = re.compile(r"You might also like(?=\[|\n|$)")
TICKETS = re.compile(r"See [^\n]{1,80}? LiveGet tickets as low as \$\d+")
EMBED = re.compile(r"\d*\s?Embed\s*$")
SECTION_TAG_LINE = re.compile(r"(?m)^[ \t]*\[[^\]\n]{1,60}\][ \t]*(?:\n|$)")
SECTION_TAG_START = re.compile(r"(?m)^[ \t]*\[[^\]\n]{1,60}\][ \t]*")
BLANK_RUNS = re.compile(r"\n{3,}")

DROP_REASONS = ("empty", "NA", "instrumental", "too short", "too long", "language", "duplicate", "over max_songs")
CLEANED = Features({"text": Value("string"), "drop": Value("string"), "key": Value("int64")})


def clean_text(text: str, opts: CleanOptions) -> str:
    """One song's lyrics with the switched-on fixes applied; line and stanza breaks are kept."""
    if opts.line_endings:
        text = INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        text = TRAILING_SPACE.sub("", text)
    if opts.unicode:
        text = unicodedata.normalize(opts.unicode, text)
    if opts.boilerplate:
        text = GENIUS_HEAD.sub("", text)
        text = TICKETS.sub("", ALSO_LIKE.sub("", text))
        text = EMBED.sub("", text.rstrip())
    if not opts.section_tags:
        text = SECTION_TAG_START.sub("", SECTION_TAG_LINE.sub("", text))
    if opts.collapse_blank_lines:
        text = BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n ")


def drop_reason(
    raw: str | None, text: str, opts: CleanOptions, min_chars: int, max_chars: int | None, language_ok: bool
) -> str:
    """Why a row is dropped ("" keeps it); the order decides which reason a row counts under."""
    if opts.drop_empty:
        if raw is None or not raw.strip():
            return "empty"
        if raw.strip().lower() in NA_VALUES:
            return "NA"
        if INSTRUMENTAL.match(text):
            return "instrumental"
        if not text:
            return "empty"
    if len(text) < min_chars:
        return "too short"
    if max_chars is not None and len(text) > max_chars:
        return "too long"
    if not language_ok:
        return "language"
    return ""


def clean_batch(
    batch: dict[str, list],
    opts: CleanOptions,
    min_chars: int,
    max_chars: int | None,
    language: str | None,
) -> dict[str, list]:
    """`Dataset.map` function: cleaned `text`, the `drop` reason ("" keeps the row) and a 64-bit `key` for dedupe."""
    texts, drops, keys = [], [], []
    for i, raw in enumerate(batch["text"]):
        text = clean_text(raw or "", opts)
        lang_ok = language is None or (batch["language"][i] or "").strip().lower() == language
        texts.append(text)
        drops.append(drop_reason(raw, text, opts, min_chars, max_chars, lang_ok))
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return {"text": texts, "drop": drops, "key": keys}


def clean_songs(
    songs: Dataset,
    opts: CleanOptions,
    min_chars: int = 1,
    max_chars: int | None = None,
    max_songs: int | None = None,
    language: str | None = None,
    num_proc: int | None = None,
    where: str = "the corpus",
) -> tuple[Dataset, dict[str, int]]:
    """The kept songs and the counts {"read", "kept", <reason>: n}; raises if nothing is left."""
    if language is not None:
        language = str(language).strip().lower()
        if songs.data.column("language").null_count == len(songs):
            raise LyricLMError(
                f"data.language={language} needs a language column, and {where} has none; unset data.language"
            )
    features = Features({**songs.features, **CLEANED})
    cleaned = songs.map(
        clean_batch,
        batched=True,
        num_proc=num_proc,
        features=features,
        fn_kwargs={"opts": opts, "min_chars": min_chars, "max_chars": max_chars, "language": language},
        desc="Cleaning lyrics",
    )
    counts: Counter[str] = Counter({"read": len(cleaned)})
    drop = cleaned.data.column("drop")
    for item in pc.value_counts(drop).to_pylist():
        if item["values"]:
            counts[item["values"]] += item["counts"]
    keep = pc.indices_nonzero(pc.equal(drop, "")).to_numpy().astype(np.int64)  # row numbers, in input order
    if opts.dedupe and len(keep):
        # First occurrence of each key: group the kept rows' keys with pyarrow (no Python set of a million texts).
        keys = pc.take(cleaned.data.column("key"), pa.array(keep))
        table = pa.table({"key": keys, "row": keep})
        first = np.sort(table.group_by("key").aggregate([("row", "min")]).column("row_min").to_numpy())
        counts["duplicate"] += len(keep) - len(first)
        keep = first
    if max_songs is not None and len(keep) > max_songs:
        counts["over max_songs"] += len(keep) - max_songs
        keep = keep[:max_songs]
    counts["kept"] = len(keep)
    if not len(keep):
        raise LyricLMError(
            f"every row of {where} was dropped by cleaning ({format_drops(counts) or 'no rows'}); "
            "check data.text_column, data.encoding and data.min_chars/max_chars/language"
        )
    kept = cleaned.select(keep).remove_columns(["drop", "key"])
    return kept, dict(counts)


def format_drops(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {counts[reason]:,}" for reason in DROP_REASONS if counts.get(reason))


def summary_line(counts: dict[str, int], where: str) -> str:
    """'read 1,000 songs from X, kept 950, dropped 50 (empty 20, duplicate 30)'."""
    dropped = counts["read"] - counts["kept"]
    detail = f" ({format_drops(counts)})" if dropped else ""
    return f"read {counts['read']:,} songs from {where}, kept {counts['kept']:,}, dropped {dropped:,}{detail}"


def warn_outsized_song(songs: Dataset) -> None:
    """Log one line when a song holds over half the corpus's characters (of two songs or more): most often songs
    run together for want of a separator, or a whole album pasted as one song."""
    if len(songs) < 2:
        return
    batches = songs.select_columns(["text"]).with_format("arrow").iter(batch_size=100_000)  # bounded memory
    chars = np.concatenate([pc.utf8_length(batch["text"]).to_numpy() for batch in batches])
    row = int(chars.argmax())
    if 2 * chars[row] <= chars.sum():
        return
    song = songs[row]
    name = f'"{song["title"]}"' if song["title"] else f'starting "{song["text"].splitlines()[0][:40]}"'
    log.warning(
        "data: song %d of %d (%s) holds %s of the corpus's %s characters; several songs without a separator between "
        "them (data.song_separator), or a whole album pasted as one song?",
        row + 1,
        len(songs),
        name,
        f"{chars[row]:,}",
        f"{chars.sum():,}",
    )
