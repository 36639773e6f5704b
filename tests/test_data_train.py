"""Users' own lyrics end to end: CSV, JSONL and a folder of .txt files train with only data.path set; bad input stops
train.py with one line."""

import json
import math
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from tests.conftest import ROOT, TINY, compose_train, run_env


def songs(n: int = 24) -> list[dict[str, str]]:
    words = ["lantern", "harbour", "kettle", "willow", "thunder", "orchard", "sparrow", "copper"]
    return [
        {
            "title": f"Song {i}",
            "lyrics": "\n".join(" ".join(words[(i + j + k) % 8] for k in range(6)) + f" {i}" for j in range(10)),
        }
        for i in range(n)
    ]


def write_source(kind: str, root):
    if kind == "csv":
        path = root / "songs.csv"
        rows = ['"{}","{}"'.format(s["title"], s["lyrics"]) for s in songs()]
        path.write_text("title,lyrics\n" + "\n".join(rows) + "\n")
    elif kind == "jsonl":
        path = root / "songs.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in songs()))
    else:
        path = root / "songs"
        path.mkdir()
        for s in songs():
            (path / f"{s['title']}.txt").write_text(s["lyrics"] + "\n")
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "folder"])
def test_own_lyrics_train_with_only_data_path(kind, tmp_path):
    path = write_source(kind, tmp_path)
    extra = ["data.packing=false", "data.block_size=128"] if kind == "folder" else []  # ~80-token songs: padded
    cfg = compose_train(
        *TINY,
        f"data.path={path}",
        *extra,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        output_dir=tmp_path / "run",
    )
    val_loss = train(cfg)
    assert val_loss is not None
    assert math.isfinite(val_loss)
    if kind == "folder":  # padded batches log their share of pad tokens once per epoch
        events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
        events.Reload()
        assert 0 < events.Scalars("train/pad_share")[0].value < 1


def test_block_size_beyond_the_model_context_is_a_user_error(corpus, tmp_path):
    cfg = compose_train(*TINY, f"data.path={corpus}", "data.block_size=4096", output_dir=tmp_path / "run")
    with pytest.raises(LyricLMError, match=r"block_size=4096 exceeds the model's context of 256 .*block_size<?=256"):
        train(cfg)


@pytest.mark.slow
def test_bad_input_stops_train_py_with_one_line_and_no_cache(tmp_path):
    bad = tmp_path / "old.csv"
    bad.write_bytes("title,lyrics\nCaf\xe9,ol\xe9\n".encode("latin-1"))
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "train.py", *TINY, f"data.path={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env={**run_env(), "LYRIC_LM_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: data.path {bad}: bytes at line 2 are not valid utf-8 (data.encoding=utf-8); set the file's "
        "encoding, e.g. data.encoding=latin-1 (or cp1252)"
    ]
    assert not cache.exists() or os.listdir(cache) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.path=song_lyrics.csv"],
        ["data.path=songs.jsonl", "data.text_column=words", "data.title_column=name"],
        ["data.path=old_export.csv", "data.encoding=latin-1"],
        ["data=hub", "data.path=user/lyrics-dataset"],
        ["data.path=x.csv", "data.language=en", "data.condition_on=[genre,title]", "data.split_by=artist"],
        ["data=text", "data.clean.section_tags=false", "data.packing=false", "data.stride=64", "data.test_fraction=.1"],
    ],
)
def test_readme_data_commands_compose(overrides, tmp_path):
    cfg = compose_train(*overrides, output_dir=tmp_path)
    assert cfg.data.path == next((o.split("=", 1)[1] for o in overrides if o.startswith("data.path=")), None)
