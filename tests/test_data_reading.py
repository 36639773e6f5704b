"""Every source type and every bad input users bring: read_songs on small files written here."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lyric_lm.data.reading import read_songs
from lyric_lm.errors import LyricLMError
from lyric_lm.hub import OFFLINE_VARIABLES


def write(path, text: str | None):
    """A file with `text`, or an empty folder for None."""
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    return path


def read(path, **kwargs):
    return read_songs(path, **kwargs)[:]


def test_genius_csv_columns_map_to_lyrics_title_artist_genre_language(tmp_path):
    csv = tmp_path / "song_lyrics.csv"
    csv.write_text(
        "title,tag,artist,year,views,features,lyrics,id,language\n"
        'Salt Road,country,Ada Vale,2004,12,{},"[Verse]\nwalk the salt road\nhome",1,en\n'
        'Tin Moon,pop,Bo Reyes,NA,3,{},"tin moon rising",2,es\n'
        "Blank,pop,Bo Reyes,NA,3,{},NA,3,es\n"
    )
    songs = read(csv)
    assert songs["text"] == ["[Verse]\nwalk the salt road\nhome", "tin moon rising", "NA"]  # cleaning drops NA
    assert songs["title"] == ["Salt Road", "Tin Moon", "Blank"]
    assert songs["genre"] == ["country", "pop", "pop"]  # Genius calls the genre `tag`
    assert songs["artist"] == ["Ada Vale", "Bo Reyes", "Bo Reyes"]
    assert songs["language"] == ["en", "es", "es"]


@pytest.mark.parametrize(
    ("header", "row", "title"),
    [
        ("artist,song,link,text", 'Ada Vale,Salt Road,/a/b,"walk on"', "Salt Road"),  # Spotify million-song CSV
        ("Artist,Title,Album,Year,Date,Lyric", 'Ada Vale,Salt Road,Dust,2001,x,"walk on"', "Salt Road"),  # Kaggle
        ("index,song,year,artist,genre,lyrics", '0,Salt Road,2001,Ada Vale,Rock,"walk on"', "Salt Road"),  # Metro
    ],
)
def test_common_csv_exports_find_their_lyrics_column(tmp_path, header, row, title):
    csv = tmp_path / "lyrics.csv"
    csv.write_text(f"{header}\n{row}\n")
    songs = read(csv)
    assert songs["text"] == ["walk on"]
    assert songs["title"] == [title]
    assert songs["artist"] == ["Ada Vale"]


def test_excel_csv_with_bom_crlf_and_quoted_multiline_cells(tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes('\ufeffTitle,Lyrics\r\n"Salt Road","line one\r\nline two, with a comma"\r\n'.encode())
    songs = read(csv)
    assert songs["title"] == ["Salt Road"]  # the BOM did not hide the first column's name
    assert songs["text"] == ["line one\r\nline two, with a comma"]  # cleaning turns CRLF into LF later


def test_tsv_and_explicit_columns(tmp_path):
    tsv = tmp_path / "lyrics.tsv"
    tsv.write_text("name\twords\nSalt Road\twalk on\n")
    songs = read(tsv, text_column="WORDS", title_column="name")
    assert songs["text"] == ["walk on"]
    assert songs["title"] == ["Salt Road"]


def test_jsonl_json_array_and_parquet(tmp_path):
    rows = [{"title": "Salt Road", "lyrics": "walk on"}, {"title": "Tin Moon", "lyrics": "rise up"}]
    (tmp_path / "songs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "songs.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "songs.parquet")
    for name in ("songs.jsonl", "songs.json", "songs.parquet"):
        songs = read(tmp_path / name)
        assert songs["text"] == ["walk on", "rise up"], name
        assert songs["title"] == ["Salt Road", "Tin Moon"], name


def test_folder_of_txt_files_and_glob(tmp_path):
    folder = tmp_path / "lyrics"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Salt road, salt road\r\n\r\nwalk me home\r\n")  # CRLF, one song per file
    (folder / "sub" / "b.txt").write_text("title: Tin Moon\n\nrise up\n===\nthird song\n")  # two songs by `===`
    songs = read(folder)
    assert sorted(songs["text"]) == ["Salt road, salt road\n\nwalk me home", "rise up", "third song"]
    assert "Tin Moon" in songs["title"]
    assert len(read_songs(str(folder / "**" / "*.txt"))) == 3
    assert read(str(folder / "a*.txt"))["text"] == ["Salt road, salt road\n\nwalk me home"]


def test_latin1_file_loads_with_its_encoding_and_names_it_otherwise(tmp_path):
    csv = tmp_path / "old.csv"
    csv.write_bytes("title,lyrics\nCaf\xe9,ol\xe9 ol\xe9\n".encode("latin-1"))
    assert read(csv, encoding="latin-1")["text"] == ["olé olé"]
    with pytest.raises(LyricLMError, match=r"old.csv.* not valid utf-8 .*data.encoding=latin-1"):
        read_songs(csv)
    txt = tmp_path / "old.txt"
    txt.write_bytes("first line\nsecond caf\xe9\n".encode("latin-1"))
    with pytest.raises(LyricLMError, match=r"old.txt: bytes at line 2 are not valid utf-8"):
        read_songs(txt)


def test_cut_off_jsonl_line_names_its_number(tmp_path):
    jsonl = tmp_path / "songs.jsonl"
    jsonl.write_text('{"title": "a", "lyrics": "x"}\n{"title": "b", "lyrics": "y"}\n{"title": "c", "lyr\n')
    with pytest.raises(LyricLMError, match=r"songs.jsonl: line 3 is not valid JSON"):
        read_songs(jsonl)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: write(d / "e.csv", ""), "e.csv is empty"),
        (lambda d: write(d / "e.txt", "\n\n"), "holds no lyrics"),
        (lambda d: write(d / "h.csv", "title,lyrics\n"), "h.csv holds no rows"),
        (lambda d: write(d / "empty", None), "holds no lyrics files"),
        (lambda d: str(d / "*.parquet"), "matches no files"),
        (lambda d: write(d / "x.csv", "title,words\na,b\n"), "columns are: title, words"),
        (lambda d: write(d / "x.docx", "la"), "unknown file type"),
    ],
)
def test_bad_sources_are_one_line_user_errors(tmp_path, setup, message):
    with pytest.raises(LyricLMError, match=message) as err:
        read_songs(setup(tmp_path))
    assert "\n" not in str(err.value)


def test_missing_named_column_lists_the_columns(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("title,lyrics\na,b\n")
    with pytest.raises(LyricLMError, match=r"no column 'words' \(data.text_column\); its columns are: title, lyrics"):
        read_songs(csv, text_column="words")


def test_hub_dataset_offline_is_a_user_error(monkeypatch):
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(LyricLMError, match="hub dataset someone/lyrics cannot be loaded: the Hugging Face hub is"):
        read_songs("someone/lyrics", fmt="hub")


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_dataset_missing_from_the_cache_in_offline_mode_is_one_line(variable, monkeypatch):
    for other in OFFLINE_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, "1")
    # The libraries read the variable when imported, as they would in a process started with it set.
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(LyricLMError, match=f"not in the local cache and offline mode is set \\({variable}=1\\)"):
        read_songs("someone/lyrics", fmt="hub")


def test_a_source_in_several_arrow_files_gets_the_missing_columns():
    from datasets import Dataset, concatenate_datasets

    from lyric_lm.data.reading import standard_columns

    # datasets writes a big input (a 1 GB CSV) as several Arrow shards; the columns it lacks must still be added.
    parts = concatenate_datasets([Dataset.from_dict({"Lyrics": ["walk on"]}), Dataset.from_dict({"Lyrics": ["rise"]})])
    songs = standard_columns(parts, {}, "x.csv")
    assert songs[1] == {"text": "rise", "title": None, "artist": None, "genre": None, "language": None}
