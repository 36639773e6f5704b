"""Reading songs from a file, a folder, a glob or a hub dataset into a 🤗 `datasets.Dataset` of standard columns.

Every source ends as one row per song with the columns `text`, `title`, `artist`, `genre`, `language` (strings,
None where unknown). The reading itself is `datasets`' own builders (text, csv, json, parquet): Arrow, memory-mapped,
streamed in chunks, so a corpus of millions of songs never sits in Python lists.

The project's plain-text format (the builtin sample uses it; README documents it): songs separated by a line `===`
(`data.song_separator`); each song may start with `key: value` header lines (title, artist, genre, ...) followed by a
blank line, then the lyrics. A `.txt` file without a separator line is one song.

Before any file is decoded, its first bytes are checked to be text: binary data decodes as latin-1 without an error.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import json
import logging
import re
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, Features, Value, load_dataset

from lyric_lm.errors import LyricLMError
from lyric_lm.hub import hub_reachable, offline_mode

log = logging.getLogger(__name__)

SONG_SEPARATOR = "==="  # the default of data.song_separator
HEADER_LINE = re.compile(r"^([a-z_]+):\s*(.*)$")
METADATA = ("title", "artist", "genre")
COLUMNS = ("text", "title", "artist", "genre", "language")

# File extension -> datasets builder. `.tsv` is the csv builder with a tab separator.
FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".lyrics": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Column names recognised case-insensitively when data.<field>_column is not set, in order of preference.
COLUMN_CANDIDATES = {
    "text": ("lyrics", "lyric", "text"),
    "title": ("title", "song", "song_name", "track", "track_name", "name"),
    "artist": ("artist", "artist_name", "artists", "singer"),
    "genre": ("genre", "tag", "genres", "style"),
    "language": ("language", "lang"),
}
HUB_NEEDS_PATH = "data=hub needs data.path=<a Hugging Face dataset id>, e.g. data.path=user/lyrics"
# A text file read as one song this long (characters or lines) often holds several parted by another line.
ONE_SONG_CHARS = 4_000
ONE_SONG_LINES = 80
RAGGED_CSV = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")  # pandas: a row longer than the header
TEXT_PROBE = 8192  # bytes read from the start of each file to tell text from binary data
CONTROL_BYTES = bytes([*range(9), 11, *range(14, 32), 127])  # C0 controls but tab, LF, FF, CR; and DEL
# Byte-order marks of wide encodings; UTF-32's first, as its little-endian mark begins with UTF-16's.
WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "utf-32",
    codecs.BOM_UTF32_BE: "utf-32",
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
}


def sample_path() -> Path:
    """The builtin corpus: original songs written for this project, shipped as package data."""
    return Path(str(files("lyric_lm.data") / "sample" / "songs.txt"))


def parse_songs(text: str, separator: str = SONG_SEPARATOR) -> list[dict[str, str]]:
    """Split a lyrics file at lines `separator` into songs: [{"text", "title", "artist", "genre"}, ...]; empty
    songs are skipped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    songs = []
    for chunk in re.split(rf"(?m)^{re.escape(separator)}[ \t]*$", text):
        lines = chunk.strip("\n").split("\n")
        meta = dict.fromkeys(METADATA, "")
        # Header lines count only at the top of a song and only as a block ended by a blank line.
        n_header = 0
        while n_header < len(lines) and HEADER_LINE.match(lines[n_header]):
            n_header += 1
        if n_header and (n_header == len(lines) or not lines[n_header].strip()):
            for line in lines[:n_header]:
                key, value = HEADER_LINE.match(line).groups()
                if key in meta:
                    meta[key] = value.strip()
            lines = lines[n_header:]
        lyrics = "\n".join(lines).strip()
        if lyrics:
            songs.append({"text": lyrics, **meta})
    return songs


def split_documents(batch: dict[str, list], indices: list[int], separator: str) -> dict[str, list]:
    """`Dataset.map` function: whole .txt files (one row each) -> one row per song, with its file's row as `source`."""
    out: dict[str, list] = {c: [] for c in (*COLUMNS, "source")}
    for doc, source in zip(batch["text"], indices, strict=True):
        for song in parse_songs(doc, separator):
            for c in COLUMNS:
                out[c].append(song.get(c) or None)
            out["source"].append(source)
    return out


def warn_one_song_files(songs: Dataset, paths: Sequence[Path]) -> None:
    """Log one line when long text files read as one song each: often several songs parted by another line than
    data.song_separator. `songs["source"]` is each song's file, an index into `paths`."""
    table = songs.select_columns(["text", "source"]).with_format("arrow")[:]  # memory-mapped, not copied
    source = table["source"].to_numpy()
    alone = np.bincount(source, minlength=len(paths))[source] == 1
    chars = pc.utf8_length(table["text"]).to_numpy()
    lines = pc.count_substring(table["text"], "\n").to_numpy() + 1
    long = np.flatnonzero(alone & ((chars > ONE_SONG_CHARS) | (lines > ONE_SONG_LINES)))
    if len(long) == 0:
        return
    more = f" (as do {len(long) - 1:,} more files)" if len(long) > 1 else ""
    log.warning(
        "data: %s reads as one song of %s characters%s; if it holds several, set data.song_separator to the line "
        "between them (e.g. data.song_separator=---)",
        paths[source[long[0]]],
        f"{chars[long[0]]:,}",
        more,
    )


def resolve_files(path: str | Path | None, fmt: str = "auto") -> tuple[list[Path], str]:
    """The files `data.path` names (a file, a folder read recursively, or a glob) and their format."""
    if path is None:
        if fmt not in ("auto", "text"):
            raise LyricLMError(f"data={fmt} needs data.path=<your {fmt} file or folder>; or use data=sample")
        return [sample_path()], "text"
    spec = str(Path(str(path)).expanduser())
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise LyricLMError(
                f"data.path '{path}' matches no files; check the pattern (quote it in the shell: "
                "data.path='lyrics/**/*.txt')"
            )
    elif not Path(spec).exists():
        raise LyricLMError(f"data.path={path} does not exist; give a lyrics file, folder or glob, or leave it unset")
    elif Path(spec).is_dir():
        found = sorted(p for p in Path(spec).rglob("*") if p.is_file() and not p.name.startswith("."))
        if fmt == "auto":
            found = [p for p in found if p.suffix.lower() in FORMATS]
        if not found:
            raise LyricLMError(
                f"data.path {spec} holds no lyrics files ({', '.join(sorted(FORMATS))}); add some or point at one"
            )
    else:
        found = [Path(spec)]
    if fmt != "auto":
        return found, fmt
    kinds = {FORMATS.get(p.suffix.lower()) for p in found}
    if None in kinds:
        odd = next(p for p in found if p.suffix.lower() not in FORMATS)
        raise LyricLMError(f"data.path {odd}: unknown file type {odd.suffix!r}; set data.format=text|csv|json|parquet")
    if len(kinds) > 1:
        raise LyricLMError(
            f"data.path {spec} mixes {', '.join(sorted(kinds))} files; point it at one kind, e.g. {spec}/**/*.csv"
        )
    return found, kinds.pop()


def path_problem(path: str | Path | None, fmt: str = "auto") -> str | None:
    """What is wrong with `data.path` for `data.format`, from the file system alone (no file is read); None if
    nothing. A hub dataset id is no local path: with format=hub only a missing id is a problem."""
    if fmt == "hub":
        return None if path else HUB_NEEDS_PATH
    try:
        resolve_files(path, fmt)
    except LyricLMError as err:
        return str(err)
    return None


@contextlib.contextmanager
def quiet_datasets_errors() -> Iterator[None]:
    """`datasets` logs its own error line before raising; ours is the one line the user should see."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_songs(
    path: str | Path | None,
    fmt: str = "auto",
    text_column: str | None = None,
    title_column: str | None = None,
    artist_column: str | None = None,
    genre_column: str | None = None,
    encoding: str = "utf-8",
    song_separator: str = SONG_SEPARATOR,
    hub_config: str | None = None,
    hub_split: str = "train",
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Songs from `path` (None: the builtin sample) as a Dataset with the columns in `COLUMNS`.

    Args:
        fmt: auto (from the file extension), text, csv, json, parquet, or hub (`path` is a hub dataset id).
        song_separator: format=text: the line between two songs of a file.
        cache_dir: where `datasets` writes its Arrow files (the caller's temporary build directory).
    """
    columns = {"text": text_column, "title": title_column, "artist": artist_column, "genre": genre_column}
    if fmt == "hub":
        if not path:
            raise LyricLMError(HUB_NEEDS_PATH)
        raw, where = _load_hub(str(path), hub_config, hub_split), f"hub dataset {path}"
        return standard_columns(raw, columns, where)
    paths, fmt = resolve_files(path, fmt)
    where = str(paths[0]) if len(paths) == 1 else f"{path} ({len(paths)} files)"
    if fmt != "parquet":
        try:
            codec = codecs.lookup(encoding).name  # latin-1, L1 -> iso8859-1
        except LookupError as err:
            raise LyricLMError(f"data.encoding={encoding} is not a known encoding; try utf-8 or latin-1") from err
    for p in paths:
        if p.stat().st_size == 0:
            raise LyricLMError(f"data.path {p} is empty; remove it or add lyrics to it")
        if fmt != "parquet":
            check_text_file(p, codec)
    data_files = [str(p) for p in paths]
    kwargs: dict = {"data_files": data_files, "split": "train", "cache_dir": str(cache_dir) if cache_dir else None}
    if fmt == "text":
        kwargs.update(sample_by="document", encoding=encoding)
    elif fmt == "csv":
        sep = "\t" if paths[0].suffix.lower() in (".tsv", ".tab") else ","
        header = _csv_header(paths[0], sep, encoding)
        # Every column as a string: pandas would guess types chunk by chunk, and a `year` column that reads as
        # int in one chunk and float (an NA) in the next breaks the Arrow schema half-way through a big file.
        # keep_default_na=False: an `NA` cell stays the text "NA", so cleaning counts it as NA, not as empty.
        strings = Features({c: Value("string") for c in header})
        kwargs.update(sep=sep, encoding=encoding, keep_default_na=False, features=strings)
    elif fmt == "json":
        kwargs.update(encoding=encoding)
    elif fmt != "parquet":
        raise LyricLMError(f"data.format={fmt} is not one of auto, text, csv, json, parquet, hub")
    try:
        with quiet_datasets_errors():
            raw = load_dataset(fmt, **kwargs)
    except Exception as err:  # the builders wrap the cause; find which file and what is wrong for the user
        raise _explain_load_error(err, paths, fmt, encoding) from err
    if len(raw) == 0:
        raise LyricLMError(f"data.path {where} holds no rows (only a header?); add songs to it")
    if fmt == "text":
        strings = Features({**{c: Value("string") for c in COLUMNS}, "source": Value("int64")})
        # The text builder gives one row per file, in the order of `paths`: a row's index is its file's.
        raw = raw.map(
            split_documents,
            batched=True,
            batch_size=16,
            with_indices=True,
            fn_kwargs={"separator": song_separator},
            remove_columns=raw.column_names,
            features=strings,
        )
        if len(raw) == 0:
            raise LyricLMError(f"data.path {where} holds no lyrics; add songs in the format the README describes")
        warn_one_song_files(raw, paths)
        return raw.remove_columns("source")
    return standard_columns(raw, columns, where)


def _load_hub(name: str, config: str | None, split: str) -> Dataset:
    offline = offline_mode()  # then datasets uses its cache
    if not offline and not hub_reachable():  # datasets would retry for a long while before failing
        raise LyricLMError(
            f"hub dataset {name} cannot be loaded: the Hugging Face hub is unreachable; set HF_HUB_OFFLINE=1 to use "
            "a cached copy, or download its files and point data.path at them"
        )
    try:
        with quiet_datasets_errors():
            return load_dataset(name, config, split=split)
    except Exception as err:
        if offline:
            raise LyricLMError(
                f"hub dataset {name} is not in the local cache and offline mode is set ({offline}=1); unset "
                f"{offline} on a machine with network access to download it, or download its files and point "
                "data.path at them"
            ) from err
        raise LyricLMError(
            f"hub dataset {name} (config {config}, split {split}) could not be loaded ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); check the id and the network, or download it and "
            "point data.path at the files"
        ) from err


def find_column(columns: Sequence[str], field: str) -> str | None:
    """The column holding `field`, matched case-insensitively (ignoring a byte-order mark) against known names."""
    by_name = {c.lstrip("\ufeff").strip().lower(): c for c in columns}
    return next((by_name[n] for n in COLUMN_CANDIDATES[field] if n in by_name), None)


def standard_columns(raw: Dataset, columns: dict[str, str | None], where: str) -> Dataset:
    """Rename the source's columns to `COLUMNS` (string type), add missing ones as None, drop the rest."""
    found = raw.column_names
    chosen = {}
    for field in COLUMNS:
        wanted = columns.get(field)
        if wanted is not None:
            match = next((c for c in found if c.lstrip("\ufeff").strip().lower() == wanted.lower()), None)
            if match is None:
                raise LyricLMError(
                    f"{where} has no column {wanted!r} (data.{field}_column); its columns are: {', '.join(found)}"
                )
        else:
            match = find_column(found, field)
        if match is not None and match not in chosen.values():
            chosen[field] = match
    if "text" not in chosen:
        raise LyricLMError(
            f"{where} has no lyrics column (looked for {'/'.join(COLUMN_CANDIDATES['text'])}); its columns are: "
            f"{', '.join(found)}; set data.text_column=<one of them>"
        )
    raw = raw.select_columns(list(chosen.values()))
    raw = raw.rename_columns({src: field for field, src in chosen.items() if src != field})
    for field in COLUMNS:
        if field not in raw.column_names:
            raw = _add_none_column(raw, field)
        elif raw.features[field] != Value("string"):
            raw = raw.cast_column(field, Value("string"))
    return raw.select_columns(list(COLUMNS))


def _add_none_column(ds: Dataset, field: str) -> Dataset:
    """A column of nulls without a Python list of a million Nones."""
    import pyarrow as pa

    return ds.add_column(field, pa.nulls(len(ds), pa.string()), feature=Value("string"))


def check_text_file(path: Path, codec: str) -> None:
    """Raise unless `path` begins like text in `codec` (a `codecs.lookup` name). Binary data (an image, a
    checkpoint) decodes as latin-1 without an error, and the model would train on its bytes."""
    with open(path, "rb") as f:
        head = f.read(TEXT_PROBE)
    if codec.startswith(("utf-16", "utf-32")):
        return  # two or four bytes a character, NUL bytes are normal: decoding finds what is wrong
    for bom, wide in WIDE_BOMS.items():
        if head.startswith(bom):
            raise LyricLMError(
                f"data.path {path} is {wide.upper()} text (it starts with a {wide.upper()} byte-order mark); "
                f"set data.encoding={wide}"
            )
    # Text in an 8-bit encoding holds no NUL and few control bytes (an old DOS file may end in ^Z, say).
    controls = len(head) - len(head.translate(None, CONTROL_BYTES))
    if b"\0" in head or controls > max(4, len(head) // 10):
        raise LyricLMError(
            f"data.path {path} is not a text file (binary bytes in its first {TEXT_PROBE // 1024} KiB: an image, "
            "archive or model file?); point data.path at your lyrics (text, CSV, JSON or Parquet)"
        )


def _csv_header(path: Path, sep: str, encoding: str) -> list[str]:
    import pandas as pd

    try:
        return pd.read_csv(path, sep=sep, encoding=encoding, nrows=0).columns.tolist()
    except pd.errors.EmptyDataError as err:
        raise LyricLMError(f"data.path {path} is empty; remove it or add lyrics to it") from err
    except UnicodeError as err:  # also UTF-16 without a byte-order mark
        raise _decode_error(path, encoding) from err


def _decode_error(path: Path, encoding: str, line: int | None = None) -> LyricLMError:
    at = f" at line {line}" if line else ""
    other = "latin-1 (or cp1252)" if codecs.lookup(encoding).name == "utf-8" else "utf-8 (the default) or latin-1"
    return LyricLMError(
        f"data.path {path}: bytes{at} are not valid {encoding} (data.encoding={encoding}); set the file's encoding, "
        f"e.g. data.encoding={other}"
    )


def first_undecodable_line(path: Path, encoding: str) -> int | None:
    """1-based line number of the first bytes `encoding` cannot decode, streaming the file; None if all decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeError as err:  # also UTF-16 without a byte-order mark, which has no position
                return line + chunk[: getattr(err, "start", 0)].count(b"\n")
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeError:
        return line
    return None


def first_malformed_json_line(path: Path, encoding: str) -> tuple[int, str] | None:
    """(line number, reason) of the first JSON Lines line that does not parse; None if every line does."""
    with open(path, encoding=encoding) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as err:
                    return number, err.msg
    return None


def _explain_load_error(err: Exception, paths: list[Path], fmt: str, encoding: str) -> Exception:
    causes = []
    e: BaseException | None = err
    while e is not None and len(causes) < 10:
        causes.append(e)
        e = e.__cause__ or e.__context__
    where = paths[0] if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    if any("corresponds to no data" in str(c) for c in causes):  # datasets' words for zero rows
        return LyricLMError(f"data.path {where} holds no rows (only a header?); add songs to it")
    if fmt != "parquet":
        for p in paths:
            line = first_undecodable_line(p, encoding)
            if line is not None:
                return _decode_error(p, encoding, line=line)
    if fmt == "json":
        for p in paths:
            with open(p, encoding=encoding) as f:
                start = f.read(1024).lstrip("\ufeff \t\r\n")[:1]
            if start == "[" or (start == "{" and p.suffix.lower() == ".json"):  # one JSON value, not JSON Lines
                text = p.read_text(encoding=encoding).lstrip("\ufeff")
                try:
                    json.loads(text)
                    continue
                except json.JSONDecodeError as bad:
                    if start == "[":  # an array parses only whole: where it broke is the place to fix
                        return _json_array_error(p, text, bad)
            bad_line = first_malformed_json_line(p, encoding)
            if bad_line is not None:
                return LyricLMError(
                    f"data.path {p}: line {bad_line[0]} is not valid JSON ({bad_line[1]}); fix or delete that line "
                    "(JSON Lines: one object per line)"
                )
    messages = [str(c) for c in causes]
    ragged = next(filter(None, map(RAGGED_CSV.search, messages)), None)
    if fmt == "csv" and ragged is not None:
        fields, line, saw = ragged.groups()
        return LyricLMError(
            f"data.path {where}: line {line} has {saw} fields where the header has {fields} (a comma or quote in "
            'unquoted lyrics?); put that cell in double quotes ("...") or fix the row'
        )
    reason = messages[-1].strip().splitlines()[0] if messages[-1].strip() else type(causes[-1]).__name__
    return LyricLMError(f"data.path {where} could not be read as {fmt}: {reason}; check the file or data.format")


def _json_array_error(path: Path, text: str, err: json.JSONDecodeError) -> LyricLMError:
    at = f"line {err.lineno}, column {err.colno}"
    if not text.rstrip().endswith("]"):
        return LyricLMError(
            f"data.path {path} is cut off: its JSON array ends before the closing ] ({at}: {err.msg}); download or "
            "export the file again"
        )
    return LyricLMError(f"data.path {path} is not valid JSON at {at} ({err.msg}); fix the file there")
