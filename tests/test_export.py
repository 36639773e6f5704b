"""Export: <run>/hf_model after training, the same logits as the checkpoint, transformers' pipeline, export.py."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from lyric_lm.errors import LyricLMError
from lyric_lm.export import export_checkpoint, hf_model_of, load_checkpoint
from lyric_lm.pipeline import train
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
    with pytest.raises(LyricLMError, match="not a model export"):
        export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "config.json").exists()


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
