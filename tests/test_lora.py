"""Bigger models on small memory: LoRA adapters (train, checkpoint, merge, export) and gradient checkpointing."""

import re
import subprocess
import sys

import pytest
import torch
from transformers import pipeline

from lyric_lm.errors import LyricLMError
from lyric_lm.model import build_causal_lm, count_parameters, merged_hf_model
from lyric_lm.module import LyricLM
from lyric_lm.pipeline import train
from lyric_lm.tokenizer import bundled_gpt2_tokenizer
from tests.conftest import ROOT, TINY, compose_train, run_env

LORA = ["model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0"]
TINY_CFG = {"name_or_path": "gpt2", "from_scratch": True, "config": {"n_layer": 2, "n_embd": 32, "n_head": 2}}


def test_lora_trains_only_the_adapters_and_its_checkpoint_loads_alone(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = compose_train(*TINY, *LORA, f"data.path={corpus}", "trainer.max_steps=3", "optim.lr=1e-2", output_dir=run)
    torch.manual_seed(cfg.seed)  # train() seeds the same way, so this is the run's initial model
    initial = LyricLM(model=dict(cfg.model), optim=dict(cfg.optim)).model.state_dict()
    train(cfg)

    module = LyricLM.load_from_checkpoint(run / "checkpoints" / "last.ckpt")  # rebuilds the same adapters
    trained = module.model.state_dict()
    assert trained.keys() == initial.keys()
    changed = {k for k in trained if not torch.equal(trained[k], initial[k])}
    assert changed
    assert all("lora_" in k for k in changed)  # the base weights stayed frozen
    trainable, total = count_parameters(module.model)
    assert 0 < trainable < 0.02 * total


def test_merged_export_loads_in_a_transformers_pipeline_and_matches_the_adapters(tmp_path):
    torch.manual_seed(0)
    model = build_causal_lm({**TINY_CFG, "lora": {"r": 4, "alpha": 8, "target_modules": ["c_attn", "c_fc"]}})
    for name, p in model.named_parameters():  # adapters start as a no-op (B = 0); make them matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        expected = model(input_ids=ids).logits

    merged = merged_hf_model(model)
    merged.save_pretrained(tmp_path / "hf_model")
    bundled_gpt2_tokenizer().save_pretrained(tmp_path / "hf_model")

    assert hasattr(model, "peft_config")  # the module's own model keeps its adapters
    generator = pipeline("text-generation", model=str(tmp_path / "hf_model"), device="cpu")
    assert not any("lora" in k for k in generator.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(generator.model(input_ids=ids).logits, expected, atol=1e-4)
    out = generator("[Verse]\n", max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith("[Verse]\n")


def test_plain_model_is_exported_as_is():
    model = build_causal_lm(TINY_CFG)
    assert merged_hf_model(model) is model


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.randint(0, 1000, (2, 16))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_causal_lm({**TINY_CFG, "gradient_checkpointing": checkpointing})
        assert model.is_gradient_checkpointing == checkpointing
        model.train()
        model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = 0.0
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append(model.transformer.h[0].mlp.c_fc.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_unknown_lora_target_is_a_user_error():
    with pytest.raises(LyricLMError, match="model.lora.target_modules"):
        build_causal_lm({**TINY_CFG, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj"]}})


@pytest.mark.slow
def test_cli_lora_on_gpt2_shape_prints_its_trainable_share(corpus, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "train.py"), "model=gpt2", "model.from_scratch=true", "model.lora.r=8",
            # One step and no validation: 124M parameters are slow on a CPU; last.ckpt is all this test needs.
            f"data.path={corpus}", "data.block_size=32", "data.batch_size=2", "trainer.max_steps=1",
            "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "callbacks.checkpoint.save_top_k=0",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", "callbacks.progress_bar=null", f"hydra.run.dir={run}",
        ],
        cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    share = re.search(r"of ([\d,]+) parameters trainable \(([\d.]+)%\)", proc.stdout + proc.stderr)
    assert share is not None
    assert int(share[1].replace(",", "")) > 124_000_000  # GPT-2 124M's shape
    assert 0 < float(share[2]) < 2
    module = LyricLM.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    merged_hf_model(module.model).save_pretrained(run / "hf_model")
    bundled_gpt2_tokenizer().save_pretrained(run / "hf_model")
    generator = pipeline("text-generation", model=str(run / "hf_model"), device="cpu")
    assert generator("[Chorus]\n", max_new_tokens=3, do_sample=False)[0]["generated_text"].startswith("[Chorus]")


@pytest.mark.parametrize(
    ("overrides", "name", "lora_r", "checkpointing"),
    [
        (["model=gpt2_medium"], "gpt2-medium", 0, False),
        (["model=gpt2_large"], "gpt2-large", 0, True),
        (["model=gpt2_xl"], "gpt2-xl", 16, True),
        (["model=gpt2_xl", "model.lora.r=0", "trainer=fsdp"], "gpt2-xl", 0, True),
        (["model=gpt2", "model.lora.r=8"], "gpt2", 8, False),
        (["model=gpt2", "model.gradient_checkpointing=true"], "gpt2", 0, True),
    ],
)
def test_readme_model_presets_compose(overrides, name, lora_r, checkpointing, tmp_path):
    model = compose_train(*overrides, output_dir=tmp_path).model
    assert (model.name_or_path, model.lora.r, model.gradient_checkpointing) == (name, lora_r, checkpointing)
    assert list(model.lora.target_modules) == ["c_attn", "c_proj", "c_fc"]
