"""The chunked LM loss gives transformers' loss and gradients, and trains through the pipeline."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lyric_lm.loss import chunked_lm_loss, supports_chunked_loss
from lyric_lm.pipeline import train
from tests.conftest import TINY, compose_train


@pytest.fixture
def lm():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64)).eval()


def losses_and_grads(lm, labels, chunk, dtype=None):
    ids = labels.clamp(min=0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        if chunk is None:
            loss = lm(input_ids=ids, labels=labels).loss
        else:
            hidden = lm.base_model(input_ids=ids).last_hidden_state
            loss = chunked_lm_loss(hidden, lm.get_output_embeddings().weight, labels, chunk)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in lm.named_parameters()}
    lm.zero_grad()
    return loss.detach(), grads


def test_chunked_loss_matches_transformers_loss_and_grads(lm):
    labels = torch.randint(0, 50257, (3, 20))
    labels[0, 5:9] = -100  # ignored positions count in neither
    ref_loss, ref_grads = losses_and_grads(lm, labels, None)
    loss, grads = losses_and_grads(lm, labels, 7)  # 57 predicted positions: chunks of 7 with a ragged last one
    assert loss == pytest.approx(ref_loss.item(), abs=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_chunked_loss_under_bf16_autocast_is_close(lm):
    labels = torch.randint(0, 50257, (2, 16))
    ref_loss, _ = losses_and_grads(lm, labels, None, torch.bfloat16)
    loss, grads = losses_and_grads(lm, labels, 8, torch.bfloat16)
    assert loss == pytest.approx(ref_loss.item(), rel=1e-2)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_chunked_loss_without_grad_is_the_loss(lm):
    labels = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        ref = lm(input_ids=labels, labels=labels).loss
        hidden = lm.base_model(input_ids=labels).last_hidden_state
        assert chunked_lm_loss(hidden, lm.get_output_embeddings().weight, labels, 5) == pytest.approx(ref.item(), 1e-5)


def test_gpt2_supports_chunked_loss(lm):
    assert supports_chunked_loss(lm)


def test_cpu_preset_trains_with_fused_adamw_chunked_loss_and_clipping(corpus, tmp_path):
    cfg = compose_train(
        *TINY,
        "trainer=cpu",
        "model.loss_chunk=128",
        f"data.path={corpus}",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        output_dir=tmp_path / "run",
    )
    assert cfg.speed.fused_adamw
    assert cfg.model.loss_chunk == 128
    assert cfg.trainer.gradient_clip_val == 1.0  # clipping stays on with the fused optimizer
    val_loss = train(cfg)
    assert val_loss is not None
    assert math.isfinite(val_loss)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
