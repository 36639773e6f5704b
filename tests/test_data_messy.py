"""Messy lyrics files as users bring them: each one works, or stops with one line naming the file and the fix."""

import json
import logging
import math

import pytest
import torch

from lyric_lm.data import LyricsDataModule
from lyric_lm.data.reading import read_songs
from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.tokenizer import bundled_gpt2_tokenizer
from lyric_lm.validation import config_problems
from tests.conftest import TINY, compose_train, write_corpus


def datamodule(path, **kwargs) -> LyricsDataModule:
    kwargs = {"block_size": 16, "batch_size": 2, "val_fraction": 0.2, **kwargs}
    return LyricsDataModule(bundled_gpt2_tokenizer(), path=str(path), **kwargs)


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(LyricLMError) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def data_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ---- data.path globs and hub ids at config-check time -----------------------------------------------------------


def lyrics_folder(tmp_path):
    """lyrics/a.txt (30 songs) and lyrics/more/b.txt (2 songs)."""
    folder = tmp_path / "lyrics"
    (folder / "more").mkdir(parents=True)
    write_corpus(folder / "a.txt")
    (folder / "more" / "b.txt").write_text("a song of its own\n===\nand another one\n")
    return folder


def data_problems(tmp_path, *overrides: str) -> list[str]:
    return [p for p in config_problems(compose_train(*TINY, *overrides, output_dir=tmp_path / "run")) if "data" in p]


def test_a_glob_that_matches_passes_the_config_check_and_trains(tmp_path):
    pattern = f"{lyrics_folder(tmp_path)}/**/*.txt"
    assert data_problems(tmp_path, f"data.path={pattern}") == []
    val_loss = train(compose_train(*TINY, f"data.path={pattern}", "debug=fast_dev_run", output_dir=tmp_path / "run"))
    assert math.isfinite(val_loss)


def test_a_glob_that_matches_nothing_says_so_in_one_line(tmp_path):
    pattern = f"{lyrics_folder(tmp_path)}/**/*.csv"
    problems = data_problems(tmp_path, f"data.path={pattern}")
    assert len(problems) == 1
    assert problems[0].startswith(f"data.path '{pattern}' matches no files; ")


def test_hub_ids_are_not_files_to_find(tmp_path):
    assert data_problems(tmp_path, "data=hub", "data.path=user/lyrics") == []
    assert data_problems(tmp_path, "data=hub") == [
        "data=hub needs data.path=<a Hugging Face dataset id>, e.g. data.path=user/lyrics"
    ]


# ---- data.song_separator ----------------------------------------------------------------------------------------


def hymnal(tmp_path, separator: str = "---", newline: str = "\n"):
    """40 hymns of 8 lines in one file, parted by `separator` lines."""
    hymns = [newline.join(f"hymn {i} verse line {j}, a sound of morning light" for j in range(8)) for i in range(40)]
    path = tmp_path / "hymns.txt"
    path.write_bytes(f"{newline}{separator}{newline}".join(hymns).encode())
    return path


def test_songs_parted_by_another_line_warn_and_the_split_error_names_the_option(tmp_path, caplog):
    path = hymnal(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lyric_lm.data"):
        message = one_line_error(datamodule(path).setup, "fit")
    assert "leave the val split empty" in message
    assert "data.song_separator (now ===)" in message
    (warning,) = data_warnings(caplog)
    assert warning.startswith(f"data: {path} reads as one song of {len(path.read_text()):,} characters; ")
    assert warning.endswith("set data.song_separator to the line between them (e.g. data.song_separator=---)")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_song_separator_parts_the_songs(tmp_path, caplog, newline):
    dm = datamodule(hymnal(tmp_path, newline=newline), song_separator="---")
    with caplog.at_level(logging.WARNING, logger="lyric_lm.data"):
        dm.setup("fit")
    assert sum(dm.summary["songs"].values()) == 40
    assert data_warnings(caplog) == []
    assert dm.fingerprint != datamodule(hymnal(tmp_path, newline=newline)).fingerprint  # a new separator re-reads


def test_every_data_preset_takes_song_separator(tmp_path):
    for preset in ("sample", "text", "csv", "json", "parquet", "hub"):
        cfg = compose_train(f"data={preset}", "data.song_separator=***", output_dir=tmp_path)
        assert cfg.data.song_separator == "***"
    assert compose_train(output_dir=tmp_path).data.song_separator == "==="


def test_a_blank_separator_is_refused(corpus):
    assert "data.song_separator=' ' must be one line" in one_line_error(datamodule, corpus, song_separator=" ")


def test_empty_songs_between_separators_are_skipped(tmp_path):
    path = tmp_path / "gaps.txt"
    path.write_text("first song\n===\n\n===\ntitle: only a header\n\n===\nsecond song\n===\n")
    assert read_songs(path)["text"][:] == ["first song", "second song"]


# ---- binary files -----------------------------------------------------------------------------------------------


def checkpoint_bytes(tmp_path) -> bytes:
    torch.save({"w": torch.zeros(64)}, tmp_path / "model.pt")
    return (tmp_path / "model.pt").read_bytes()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("songs.txt", lambda d: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8),  # an image
        ("songs.txt", checkpoint_bytes),  # a model file renamed
        ("songs.csv", lambda d: b"title,lyrics\na,b\x00c\x00d\n"),
        ("songs.json", lambda d: b'[{"lyrics": "\x01\x02\x03\x04\x05\x06\x07\x08"}]'),  # control characters
    ],
)
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_binary_file_is_named_as_not_text_whatever_the_encoding(tmp_path, name, content, encoding):
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    message = one_line_error(read_songs, path, encoding=encoding)
    assert message.startswith(f"data.path {path} is not a text file (")
    assert "encoding" not in message  # no advice that would then train on the bytes


def test_utf16_with_byte_order_mark_names_its_encoding_and_reads_with_it(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("title,lyrics\nSalt Road,walk on\n".encode("utf-16"))
    message = one_line_error(read_songs, path)
    assert (
        message
        == f"data.path {path} is UTF-16 text (it starts with a UTF-16 byte-order mark); set data.encoding=utf-16"
    )
    assert read_songs(path, encoding="utf-16")["text"][:] == ["walk on"]


def test_a_wrong_wide_encoding_is_a_one_line_error(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("walk on\n")
    message = one_line_error(read_songs, path, encoding="utf-16")
    assert message.endswith("set the file's encoding, e.g. data.encoding=utf-8 (the default) or latin-1")


# ---- broken JSON and CSV ----------------------------------------------------------------------------------------


def test_a_cut_off_json_array_names_line_and_column(tmp_path):
    rows = [{"title": f"Song {i}", "lyrics": f"walk on {i}\nand on"} for i in range(5)]
    path = tmp_path / "songs.json"
    path.write_text(json.dumps(rows, indent=1)[:-40])
    message = one_line_error(read_songs, path)
    assert message.startswith(f"data.path {path} is cut off: its JSON array ends before the closing ] (line 19, ")
    assert message.endswith("; download or export the file again")


def test_a_broken_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "songs.json"
    path.write_text('[\n {"lyrics": "walk on"},\n {"lyrics": "rise" "up"}\n]\n')
    message = one_line_error(read_songs, path)
    assert (
        message
        == f"data.path {path} is not valid JSON at line 3, column 20 (Expecting ',' delimiter); fix the file there"
    )


def test_a_csv_row_with_too_many_cells_names_its_line(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text("title,lyrics\nSalt Road,walk on\nTin Moon,rise, up\n")
    message = one_line_error(read_songs, path)
    assert message.startswith(f"data.path {path}: line 3 has 3 fields where the header has 2 (")


def test_a_csv_row_with_too_few_cells_reads(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text("lyrics,title\nwalk on,Salt Road\nrise up\n")
    assert read_songs(path)["text"][:] == ["walk on", "rise up"]


@pytest.mark.parametrize(("name", "text"), [("h.csv", "title,lyrics\r\n"), ("h.json", "[]"), ("h.txt", "title: a\n\n")])
def test_a_file_of_headers_only_says_it_holds_no_songs(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert "holds no" in one_line_error(read_songs, tmp_path / name)


# ---- one song much bigger than the rest -------------------------------------------------------------------------


def test_a_song_holding_most_of_the_corpus_is_named(tmp_path, caplog):
    path = write_corpus(tmp_path / "songs.txt", n_songs=20, lines=4)
    album = "\n".join(f"track {i} line, the whole album pasted in" for i in range(300))
    path.write_text(path.read_text() + f"===\ntitle: Greatest Hits\n\n{album}\n")
    with caplog.at_level(logging.WARNING, logger="lyric_lm.data"):
        datamodule(path).setup("fit")
    outsized = [w for w in data_warnings(caplog) if "Greatest Hits" in w]
    assert len(outsized) == 1
    assert outsized[0].startswith('data: song 21 of 21 ("Greatest Hits") holds 12,')
    assert "data.song_separator" in outsized[0]
