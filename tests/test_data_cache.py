"""The tokenized-data cache heals: a damaged entry or a killed run's leftovers never stop a later run."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from lyric_lm.data import LyricsDataModule
from lyric_lm.tokenizer import bundled_gpt2_tokenizer

ARROW = "blocks/train/data-00000-of-00001.arrow"


def datamodule(path, cache) -> LyricsDataModule:
    return LyricsDataModule(bundled_gpt2_tokenizer(), path=str(path), block_size=16, batch_size=2, cache_dir=str(cache))


@pytest.fixture
def built(corpus, tmp_path):
    """A cache entry built from the corpus, and the training blocks it holds."""
    dm = datamodule(corpus, tmp_path / "cache")
    dm.setup("fit")
    return dm, dm.blocks["train"][:]["input_ids"].clone()


def rebuilt(corpus, tmp_path, caplog) -> tuple[LyricsDataModule, list[str]]:
    """A new run on the same data: its datamodule, set up, and the data log lines it wrote."""
    dm = datamodule(corpus, tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="lyric_lm.data"):
        dm.setup("fit")
    return dm, [r.getMessage() for r in caplog.records]


def test_a_truncated_arrow_file_is_detected_and_rebuilt(built, corpus, tmp_path, caplog):
    first, blocks = built
    arrow = first.cache_path / ARROW
    os.truncate(arrow, arrow.stat().st_size // 2)
    dm, lines = rebuilt(corpus, tmp_path, caplog)
    assert f"data: cache {dm.cache_path} is damaged ({ARROW} has " in "\n".join(lines)
    assert any(line.endswith("; rebuilding") for line in lines)
    assert torch.equal(dm.blocks["train"][:]["input_ids"], blocks)


def test_damage_the_size_check_misses_is_caught_when_loading(built, corpus, tmp_path, caplog):
    first, blocks = built
    arrow = first.cache_path / ARROW
    arrow.write_bytes(b"\xff" * arrow.stat().st_size)  # same size, garbage bytes
    dm, lines = rebuilt(corpus, tmp_path, caplog)
    assert sum("is damaged" in line for line in lines) == 1
    assert torch.equal(dm.blocks["train"][:]["input_ids"], blocks)


def test_an_entry_without_its_summary_is_rebuilt(built, corpus, tmp_path, caplog):
    first, blocks = built
    (first.cache_path / "summary.json").unlink()
    dm, lines = rebuilt(corpus, tmp_path, caplog)
    assert f"data: cache {dm.cache_path} is damaged (no summary.json); rebuilding" in lines
    assert torch.equal(dm.blocks["train"][:]["input_ids"], blocks)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [dm.cache_path.name]  # nothing set aside is left


def test_an_entry_from_before_file_sizes_were_recorded_is_still_a_hit(built, corpus, tmp_path, monkeypatch):
    first, _ = built
    summary = json.loads((first.cache_path / "summary.json").read_text())
    del summary["files"]
    (first.cache_path / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr("lyric_lm.data.datamodule.read_songs", pytest.fail)  # a hit reads no lyrics
    datamodule(corpus, tmp_path / "cache").setup("fit")


def temp_dir(cache, name: str, owner: dict | None = None, age_s: float = 0):
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / "work").mkdir()
    if owner is not None:
        (folder / "owner.json").write_text(json.dumps(owner))
    os.utime(folder, (time.time() - age_s, time.time() - age_s))
    return folder


def test_temporary_folders_of_ended_runs_go_and_those_of_running_ones_stay(corpus, tmp_path, caplog):
    cache = tmp_path / "cache"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = socket.gethostname()
    killed = temp_dir(cache, ".tmp-aaa-1", {"pid": int(ended.stdout), "host": here})
    running = temp_dir(cache, ".tmp-aaa-2", {"pid": os.getpid(), "host": here})  # another run tokenizing now
    elsewhere = temp_dir(cache, ".tmp-aaa-3", {"pid": int(ended.stdout), "host": f"not-{here}"})
    old_unowned = temp_dir(cache, ".tmp-bbb-1", age_s=2 * 3600)  # an older lyric_lm's, killed
    new_unowned = temp_dir(cache, ".tmp-bbb-2")  # just made: its owner file comes next
    half_removed = temp_dir(cache, ".trash-ccc-1")  # a removal cut short

    dm, lines = rebuilt(corpus, tmp_path, caplog)
    assert not killed.exists()
    assert not old_unowned.exists()
    assert not half_removed.exists()
    assert running.exists()
    assert elsewhere.exists()
    assert new_unowned.exists()
    assert f"data: removed the temporary folder {killed} (its run, pid {int(ended.stdout)}, has ended)" in lines
    assert dm.cache_path.is_dir()
    hidden = sorted(p.name for p in cache.iterdir() if p.name.startswith("."))
    assert hidden == [".tmp-aaa-2", ".tmp-aaa-3", ".tmp-bbb-2"]  # this run's own temporary folder is gone too


def test_of_two_runs_building_one_entry_the_first_to_finish_wins(corpus, tmp_path, monkeypatch):
    first, second = datamodule(corpus, tmp_path / "cache"), datamodule(corpus, tmp_path / "cache")
    build = second._build

    def first_finishes_meanwhile(work, out):
        build(work, out)
        first.prepare_data()  # the other run renames its entry into place while this one still holds its own

    monkeypatch.setattr(second, "_build", first_finishes_meanwhile)
    second.prepare_data()
    second.setup("fit")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [second.cache_path.name]
