"""Export: <run>/hf_model after training, the same logits as the checkpoint, transformers' pipeline, export.py."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.songs.export import EXPORT_LIST, export_checkpoint
from lyric_lm.songs.loading import hf_model_of, load_checkpoint
from tests.conftest import ROOT, TINY, compose_train, run_env


def test_training_exports_the_best_checkpoint_for_transformers_pipeline(tiny_run):
    export = tiny_run / "hf_model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"):
        assert (export / name).is_file(), name
    card = (export / "README.md").read_text()
    assert "block_size" in card  # the data settings
    assert "step000003" in card  # the best checkpoint by val/loss, not only last.ckpt
    generate = pipeline("text-generation", model=str(export))
    out = generate("<|endoftext|>[Chorus]\n", max_new_tokens=6)[0]["generated_text"]
    assert out.startswith("<|endoftext|>[Chorus]\n")
    assert len(out) > len("<|endoftext|>[Chorus]\n")
    gen_cfg = AutoModelForCausalLM.from_pretrained(export).generation_config
    tok = AutoTokenizer.from_pretrained(export)
    assert gen_cfg.eos_token_id == tok.eos_token_id == 50256
    assert gen_cfg.pad_token_id == 50256


def test_exported_model_gives_the_checkpoints_logits(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    out = export_checkpoint(ckpt, tmp_path / "hf")
    ids = torch.tensor([[50256, 464, 1110, 318, 1402, 13]])
    with torch.no_grad():
        expected = load_checkpoint(ckpt).model(ids).logits
        got = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
    assert torch.equal(got, expected)


def test_export_never_overwrites_a_folder_that_is_not_a_model(tiny_run, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(LyricLMError, match="holds files that export.py did not write"):
        export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "config.json").exists()


def test_someone_elses_model_folder_is_refused_untouched(tiny_run, tmp_path):
    other = tmp_path / "their_model"
    (other / "extra").mkdir(parents=True)
    (other / "config.json").write_text("{}")
    (other / "extra" / "data.bin").write_bytes(b"theirs")
    with pytest.raises(LyricLMError, match=f"^output_dir={other} holds files that export.py did not write"):
        export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", other)
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*")) == ["config.json", "extra", "extra/data.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["their_model"]  # no temporary folder left beside


def test_a_new_export_replaces_only_the_files_of_the_earlier_one(tiny_run, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()  # an empty folder is fine
    export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    listing = json.loads((out / EXPORT_LIST).read_text())["files"]
    assert {"config.json", "model.safetensors", "README.md"} <= set(listing)
    # The user's own files beside the export, and a file an older export wrote that this one does not.
    (out / "notes.txt").write_text("mine")
    (out / "eval").mkdir()
    (out / "eval" / "metrics.json").write_text("{}")
    (out / "old_shard.bin").write_bytes(b"old")
    (out / EXPORT_LIST).write_text(json.dumps({"files": [*listing, "old_shard.bin"]}))
    (out / "README.md").write_text("stale card")

    export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "eval" / "metrics.json").read_text() == "{}"
    assert not (out / "old_shard.bin").exists()
    assert (out / "README.md").read_text() != "stale card"
    assert AutoModelForCausalLM.from_pretrained(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_an_export_from_before_the_file_list_is_replaced_but_not_with_a_users_file_in_it(tiny_run, tmp_path):
    # lyric_lm 0.1.0 wrote hf_model/ without EXPORT_LIST; a resumed older run exports into it again.
    out = tmp_path / "hf_model"
    export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    (out / EXPORT_LIST).unlink()
    export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    assert (out / EXPORT_LIST).is_file()

    (out / EXPORT_LIST).unlink()
    (out / "my_notes.txt").write_text("mine")  # no longer only what an export writes: not ours to replace
    with pytest.raises(LyricLMError, match="holds files that export.py did not write"):
        export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    assert (out / "my_notes.txt").read_text() == "mine"


def test_a_failed_export_leaves_the_earlier_one_whole(tiny_run, tmp_path, monkeypatch):
    out = export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    replace = os.replace
    moved_in = []

    def fails_midway(src, dst):  # the disk fills up while the new files are moved in
        if Path(dst).parent == out:
            moved_in.append(dst)
            if len(moved_in) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", fails_midway)
    with pytest.raises(LyricLMError, match=f"^cannot write to {tmp_path}: the disk is full; free some space"):
        export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", out)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_export_without_output_dir_replaces_the_runs_hf_model(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # the session's run stays as training left it
    (run / "hf_model" / "notes.txt").write_text("mine")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "export.py"), f"ckpt_path={run}/checkpoints/last.ckpt"],
        env=run_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "last.ckpt" in (run / "hf_model" / "README.md").read_text()  # was the best checkpoint's card
    assert (run / "hf_model" / "notes.txt").read_text() == "mine"


def test_exported_generation_config_fits_the_context(tiny_run):
    model = AutoModelForCausalLM.from_pretrained(tiny_run / "hf_model")
    # pipeline("text-generation") on the export: a short prompt plus max_new_tokens stay within n_positions.
    assert model.generation_config.max_new_tokens == model.config.n_positions // 2 == 128


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(LyricLMError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(LyricLMError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_adapters_are_merged_on_a_copy():
    class Adapted(torch.nn.Module):
        merged = False

        def merge_and_unload(self):
            self.merged = True
            return self

    class Module:
        model = Adapted()

    module = Module()
    merged = hf_model_of(module)
    assert merged.merged
    assert not module.model.merged  # the trained module keeps its adapters


def test_fast_dev_run_exports_nothing(corpus, tmp_path):
    train(compose_train(*TINY, f"data.path={corpus}", "debug=fast_dev_run", output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "hf_model").exists()


@pytest.mark.slow
def test_export_cli_writes_a_model_folder(tiny_run, tmp_path):
    cmd = [sys.executable, str(ROOT / "export.py"), f"ckpt_path={tiny_run}/checkpoints/last.ckpt"]
    proc = subprocess.run([*cmd, f"output_dir={tmp_path / 'hf'}"], env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf") is not None
