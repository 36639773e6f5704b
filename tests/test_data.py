import pytest
import torch

from lyric_lm.data import LyricsDataModule
from lyric_lm.data.packing import pack_blocks, pad_songs, tokenize_songs
from lyric_lm.data.reading import parse_songs, read_songs, sample_path
from lyric_lm.errors import LyricLMError
from lyric_lm.tokenizer import bundled_gpt2_tokenizer

EOS = 50256


def test_parse_songs_reads_headers_and_separators():
    text = "title: A\r\ngenre: folk\r\n\r\n[Verse]\r\nline one\r\n\r\nline two\r\n===\r\nno header here\r\n===\n\n"
    songs = parse_songs(text)
    assert [s["title"] for s in songs] == ["A", ""]
    assert songs[0]["genre"] == "folk"
    assert songs[0]["text"] == "[Verse]\nline one\n\nline two"  # CRLF normalised, stanza break kept
    assert songs[1]["text"] == "no header here"


def test_builtin_sample_has_forty_songs_with_metadata():
    songs = read_songs(None)
    assert sample_path().is_file()
    assert len(songs) >= 40
    assert all(s["title"] and s["genre"] for s in songs)
    assert len(set(songs["text"][:])) == len(songs)


def test_eos_between_songs_and_full_blocks():
    tok = bundled_gpt2_tokenizer()
    batch = tokenize_songs({"text": ["la la", "oh oh oh"]}, tok, EOS)
    assert [ids[-1] for ids in batch["input_ids"]] == [EOS, EOS]
    flat = batch["input_ids"][0] + batch["input_ids"][1]
    blocks = pack_blocks(batch, block_size=3)["input_ids"]
    assert all(len(b) == 3 for b in blocks)
    assert sum(blocks, []) == flat[: len(blocks) * 3]


def test_datamodule_splits_by_song_and_batches(corpus):
    tok = bundled_gpt2_tokenizer()
    dm = LyricsDataModule(tok, path=str(corpus), block_size=16, batch_size=4, val_fraction=0.2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 16)
    assert torch.equal(batch["labels"], batch["input_ids"])
    # No song's text is in both splits: every song's marker number is in one split only.
    decoded = {split: tok.decode(ds[:]["input_ids"].flatten().tolist()) for split, ds in dm.blocks.items()}
    val_ids = {i for i in range(30) if f" {i}\n" in decoded["val"] or decoded["val"].endswith(f" {i}")}
    train_ids = {i for i in range(30) if f" {i}\n" in decoded["train"]}
    assert val_ids
    assert train_ids
    assert not (val_ids & train_ids)
    assert (dm.blocks["train"][:]["input_ids"] == EOS).any()


def test_split_is_fixed_by_split_seed(corpus):
    tok = bundled_gpt2_tokenizer()
    runs = []
    for _ in range(2):
        dm = LyricsDataModule(tok, path=str(corpus), block_size=16, val_fraction=0.2, split_seed=7)
        dm.setup("fit")
        runs.append(dm.blocks["val"][:]["input_ids"])
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "/no/such/lyrics.txt"}, "does not exist"),
        ({"val_fraction": 0.0}, "leave the val split empty"),
        ({"block_size": 100_000}, "shorter than one block"),
    ],
)
def test_bad_data_settings_are_user_errors(corpus, kwargs, message):
    kwargs.setdefault("path", str(corpus))
    with pytest.raises(LyricLMError, match=message):
        LyricsDataModule(bundled_gpt2_tokenizer(), **kwargs).setup("fit")


def test_empty_file_is_a_user_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(LyricLMError, match="holds no lyrics"):
        read_songs(tmp_path / "empty.txt")


def test_conditioning_header_is_readable_and_skips_missing_fields():
    from lyric_lm.data.conditioning import with_header

    meta = {"genre": "country", "artist": "", "title": "Dust  Road"}
    assert (
        with_header("[Verse]\nla", meta, ["genre", "artist", "title"])
        == "genre: country\ntitle: Dust Road\n\n[Verse]\nla"
    )
    assert with_header("la", meta, []) == "la"


def datamodule(path, **kwargs) -> LyricsDataModule:
    kwargs = {"block_size": 16, "batch_size": 2, "val_fraction": 0.2, **kwargs}
    return LyricsDataModule(bundled_gpt2_tokenizer(), path=str(path), **kwargs)


def test_padding_masks_pad_tokens_and_windows_long_songs():
    batch = {"input_ids": [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10]]}
    out = pad_songs(batch, block_size=4, stride=2, pad_token_id=0)
    assert out["input_ids"] == [[1, 2, 3, 0], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 10, 0]]
    assert out["attention_mask"] == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    # -100 on padding and on the overlap with the window before: each token is a target once.
    assert out["labels"] == [[1, 2, 3, -100], [4, 5, 6, 7], [-100, -100, 8, 9], [-100, -100, 10, -100]]


def test_packing_false_gives_padded_batches_with_masks(corpus):
    dm = datamodule(corpus, packing=False, block_size=64, stride=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert 0 < dm.summary["padding_share"]["train"] < 1


def test_second_run_hits_the_cache_and_a_changed_input_misses(corpus, monkeypatch):
    first = datamodule(corpus)
    first.prepare_data()

    def no_reading(*args, **kwargs):
        raise AssertionError("read and tokenized again")

    monkeypatch.setattr("lyric_lm.data.datamodule.read_songs", no_reading)
    again = datamodule(corpus)
    assert again.fingerprint == first.fingerprint
    again.prepare_data()
    again.setup("fit")
    first.setup("fit")
    assert torch.equal(again.blocks["train"][:]["input_ids"], first.blocks["train"][:]["input_ids"])
    assert datamodule(corpus, block_size=32).fingerprint != first.fingerprint
    assert datamodule(corpus, clean={"section_tags": False}).fingerprint != first.fingerprint
    corpus.write_text(corpus.read_text() + "\n===\nname a new song\n")
    assert datamodule(corpus).fingerprint != first.fingerprint


def test_failed_build_leaves_no_cache_behind(corpus, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(LyricLMError, match="fewer than one batch"):
        datamodule(corpus, batch_size=10_000, cache_dir=str(cache)).prepare_data()
    assert list(cache.iterdir()) == []


def test_corpus_with_duplicates_has_no_song_in_two_splits(tmp_path):
    lines = [f"verse {i} of the road\nand the river {i}" for i in range(20)]
    path = tmp_path / "dupes.txt"
    path.write_text("\n===\n".join(lines + lines[:10]))  # ten songs twice
    dm = datamodule(path, val_fraction=0.25, test_fraction=0.25)
    dm.setup("fit")
    texts = {split: set(dm.song_texts(split)["text"]) for split in ("train", "val", "test")}
    assert sum(len(t) for t in texts.values()) == 20
    assert not (texts["train"] & texts["val"])
    assert not (texts["train"] & texts["test"])
    assert not (texts["val"] & texts["test"])
    assert dm.summary["counts"]["duplicate"] == 10
    assert next(iter(dm.test_dataloader()))["input_ids"].shape[1] == 16


def test_split_by_artist_holds_out_whole_artists(corpus):
    text = corpus.read_text()
    corpus.write_text(text.split("===")[1] + "===\n" + text)  # song 1 twice: the kept rows are 0, 2, 3, ...
    dm = datamodule(corpus, split_by="artist", val_fraction=0.25)  # the corpus has 4 artists
    dm.setup("fit")
    train, val = (set(dm.song_texts(s)["artist"]) for s in ("train", "val"))
    assert val
    assert not train & val


def test_condition_on_writes_the_shared_header(corpus):
    from lyric_lm.data.conditioning import format_header

    dm = datamodule(corpus, condition_on=["genre", "title"], packing=False, block_size=64)
    dm.setup("fit")
    first = dm.blocks["train"][0]
    text = bundled_gpt2_tokenizer().decode(first["input_ids"][first["attention_mask"] == 1].tolist())
    song = dm.song_texts("train")[0]
    assert text.startswith(format_header(song, ["genre", "title"]) + "[Verse]")
    assert text.startswith("genre: folk\ntitle: Song ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leave the train split empty"),
        ({"test_fraction": 0.001}, "leave the test split empty"),
        ({"stride": 0}, "data.stride=0 must be between 1"),
        ({"condition_on": ["mood"]}, "data.condition_on has mood"),
        ({"split_by": "album"}, "data.split_by=album is not song or artist"),
    ],
)
def test_bad_split_and_block_settings_are_user_errors(corpus, kwargs, message):
    with pytest.raises(LyricLMError, match=message):
        datamodule(corpus, **kwargs).setup("fit")


def test_no_test_split_unless_asked(corpus):
    dm = datamodule(corpus)
    dm.setup("fit")
    with pytest.raises(LyricLMError, match="set data.test_fraction"):
        dm.test_dataloader()
