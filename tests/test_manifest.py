"""The run manifest: written in the run dir and into each checkpoint; its config hash finds runs to resume."""

import json
from importlib import metadata

import torch

from lyric_lm.pipeline import train
from lyric_lm.run.manifest import config_hash
from lyric_lm.run.resume import resolve_resume
from tests.conftest import TINY, compose_train


def test_manifest_in_run_dir_and_checkpoint_traces_the_run(corpus, tmp_path):
    run = tmp_path / "run"
    train(compose_train(*TINY, f"data.path={corpus}", "trainer.max_steps=2", output_dir=run))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["data"]["path"] == str(corpus)
    assert manifest["config"]["seed"] == 42
    assert manifest["lyric_lm"]
    assert "git_commit" in manifest
    assert manifest["packages"]["torch"] == metadata.version("torch")
    assert manifest["packages"]["lightning"] == metadata.version("lightning")
    assert manifest["data_fingerprint"]
    assert manifest["tokenizer"]["vocab_size"] == 50257
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["manifest"] == json.loads(
        json.dumps(manifest)
    )


def test_config_hash_ignores_the_run_dir_and_resume_keys_only(tmp_path):
    a = config_hash(compose_train(*TINY, output_dir=tmp_path / "a"))
    assert a == config_hash(compose_train(*TINY, "resume=auto", output_dir=tmp_path / "b"))
    assert a != config_hash(compose_train(*TINY, "optim.lr=1e-3", output_dir=tmp_path / "a"))


def test_resume_auto_finds_the_latest_run_with_the_same_config(corpus, tmp_path):
    runs = tmp_path / "outputs" / "2026-01-01"
    args = (*TINY, f"data.path={corpus}", "trainer.max_steps=2")
    train(compose_train(*args, output_dir=runs / "10-00-00"))
    ckpt, out = resolve_resume(compose_train(*args, "resume=auto", output_dir=runs / "11-00-00"))
    assert out == runs / "10-00-00"
    assert ckpt == str(runs / "10-00-00" / "checkpoints" / "last.ckpt")
    # a different config starts afresh in its own dir
    ckpt, out = resolve_resume(compose_train(*args, "optim.lr=1e-3", "resume=auto", output_dir=runs / "12-00-00"))
    assert (ckpt, out) == (None, runs / "12-00-00")
