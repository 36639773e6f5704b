import pytest
import torch

from lyric_lm.data import LyricsDataModule
from lyric_lm.data.packing import pack_blocks, tokenize_songs
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
