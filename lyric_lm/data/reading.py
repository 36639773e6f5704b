"""Reading songs from the project's plain-text lyrics format into a 🤗 `datasets.Dataset`.

The format (the builtin sample uses it; README documents it): songs separated by a line `===`; each song may
start with `key: value` header lines (title, artist, genre, ...) followed by a blank line, then the lyrics.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from datasets import Dataset

from lyric_lm.errors import LyricLMError

SONG_SEPARATOR = "==="
HEADER_LINE = re.compile(r"^([a-z_]+):\s*(.*)$")
METADATA = ("title", "artist", "genre")


def sample_path() -> Path:
    """The builtin corpus: original songs written for this project, shipped as package data."""
    return Path(str(files("lyric_lm.data") / "sample" / "songs.txt"))


def parse_songs(text: str) -> list[dict[str, str]]:
    """Split a lyrics file into songs: [{"text", "title", "artist", "genre"}, ...]; empty songs are skipped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    songs = []
    for chunk in re.split(rf"(?m)^{re.escape(SONG_SEPARATOR)}[ \t]*$", text):
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


def read_songs(path: str | Path | None) -> Dataset:
    """Songs from a `.txt` file or a folder of them (`None`: the builtin sample) as a Dataset."""
    path = sample_path() if path is None else Path(path).expanduser()
    if not path.exists():
        raise LyricLMError(f"data.path {path} does not exist; give a lyrics file or folder, or leave it unset")
    paths = sorted(p for p in path.rglob("*.txt") if p.is_file()) if path.is_dir() else [path]
    songs = [song for p in paths for song in parse_songs(p.read_text(encoding="utf-8"))]
    if not songs:
        raise LyricLMError(f"data.path {path} holds no lyrics; add songs in the format the README describes")
    return Dataset.from_list(songs)
