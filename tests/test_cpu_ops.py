"""CPU speed options (speed.fused_gelu, fast_dropout, sparse_embedding_grad): the same function, reproducible."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from lyric_lm.model import build_causal_lm
from lyric_lm.speed import cpu_ops

TINY = {"name_or_path": "gpt2", "from_scratch": True, "config": {"n_layer": 2, "n_embd": 64, "n_head": 4}}


def build_fast(model_cfg: dict) -> torch.nn.Module:
    """The model of `model_cfg` with speed.fused_gelu and speed.fast_dropout applied, as speed=cpu applies them."""
    model = build_causal_lm(model_cfg)
    cpu_ops.use_fused_gelu(model)
    cpu_ops.use_fast_dropout(model)
    return model


def test_dropout_keeps_each_element_with_probability_1_minus_p_and_rescales():
    x = torch.ones(1000, 1000)
    for p in (0.1, 0.5):
        y = cpu_ops.fast_dropout(x, p)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 1e6 draws: 5 sigma is ~0.0025
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-4)
        assert abs(y.mean().item() - 1) < 0.01  # unbiased, as inverted dropout is


def test_dropout_bits_are_not_correlated_between_neighbours_or_calls():
    a = cpu_ops.keep_mask((1 << 20,), 0.5)[0].float()
    b = cpu_ops.keep_mask((1 << 20,), 0.5)[0].float()
    for u, v in ((a[:-1], a[1:]), (a[:-4], a[4:]), (a, b)):  # next element, same word's neighbour, next call
        assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item()) < 0.01


def test_dropout_backward_uses_the_forward_mask():
    x = torch.randn(64, 300, requires_grad=True)
    y = cpu_ops.fast_dropout(x, 0.2)
    y.sum().backward()
    assert torch.allclose(x.grad, (y != 0) / 0.8, rtol=1e-4)


def test_dropout_is_reproducible_under_a_seed_and_differs_between_calls():
    x = torch.ones(4, 128, 64)
    torch.manual_seed(7)
    first, second = cpu_ops.fast_dropout(x, 0.1), cpu_ops.fast_dropout(x, 0.1)
    torch.manual_seed(7)
    assert torch.equal(cpu_ops.fast_dropout(x, 0.1), first)
    assert not torch.equal(first, second)


def test_dropout_off_in_eval_and_at_the_edges():
    x = torch.randn(3, 5)
    assert torch.equal(cpu_ops.fast_dropout(x, 0.1, training=False), x)
    assert torch.equal(cpu_ops.fast_dropout(x, 0.0), x)
    assert torch.equal(cpu_ops.fast_dropout(x, 1.0), torch.zeros_like(x))
    assert cpu_ops.fast_dropout(x.bfloat16(), 0.1).dtype == torch.bfloat16


@pytest.mark.parametrize("mask", ["causal", "bool", "additive"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_math_attention_matches_sdpa(mask, dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, dtype=dtype) for _ in range(3))
    pad = torch.ones(2, 1, 16, 16, dtype=torch.bool).tril()
    pad[1, ..., 12:] = False  # the second sequence's last 4 tokens are padding
    attn_mask = {"causal": None, "bool": pad, "additive": torch.zeros(pad.shape).masked_fill(~pad, -1e9).to(dtype)}
    m = attn_mask[mask]
    ours = cpu_ops.math_attention(q, k, v, m, dropout=0.0, is_causal=m is None)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=m is None).float()
    assert torch.allclose(ours.float(), ref, atol=1e-5 if dtype == torch.float32 else 1e-2)


def test_fast_options_keep_the_models_outputs_and_gradients():
    """Without dropout (eval, or p=0) a model with both options computes what the plain one does."""
    torch.manual_seed(0)
    no_dropout = {**TINY["config"], "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    plain = build_causal_lm({**TINY, "config": no_dropout})
    fast = build_fast({**TINY, "config": no_dropout})
    fast.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 50257, (2, 32))
    for mode in ("eval", "train"):
        getattr(plain, mode)(), getattr(fast, mode)()
        a, b = plain(input_ids=ids, labels=ids).loss, fast(input_ids=ids, labels=ids).loss
        assert torch.allclose(a, b, atol=1e-5)
    a.backward(), b.backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-3), name


def test_fast_options_swap_every_dropout_and_gelu_and_route_attention():
    model = build_fast({**TINY})
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Dropout" not in kinds
    assert "NewGELUActivation" not in kinds
    assert {"FastDropout", "GELU"} <= kinds
    assert model.config._attn_implementation == cpu_ops.ATTENTION
    model.train()
    ids = torch.randint(0, 50257, (2, 32))
    torch.manual_seed(1)
    a = model(input_ids=ids, labels=ids).loss
    torch.manual_seed(1)
    assert torch.equal(model(input_ids=ids, labels=ids).loss, a)  # dropout drawn from torch's seeded generator
    b = model(input_ids=ids, labels=ids).loss
    assert not torch.equal(a, b)  # and a new mask each step


def test_attention_dropout_goes_through_fast_dropout(monkeypatch):
    """With only attention dropout on, each layer's attention weights draw one fast mask per training forward."""
    calls = []
    draw = cpu_ops.keep_mask
    monkeypatch.setattr(cpu_ops, "keep_mask", lambda shape, p: calls.append(tuple(shape)) or draw(shape, p))
    config = {**TINY["config"], "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.5}
    model = build_fast({**TINY, "config": config}).train()
    model(input_ids=torch.randint(0, 50257, (2, 16)))
    assert calls == [(2, 4, 16, 16)] * 2  # (batch, heads, tokens, tokens), one per layer
    model.eval()(input_ids=torch.randint(0, 50257, (2, 16)))
    assert len(calls) == 2  # eval: SDPA itself, no dropout


def test_saved_model_is_plain_transformers(tmp_path):
    """What the options change lives in module objects only: the saved config is GPT-2's, and reloads plain."""
    model = build_fast({**TINY})
    model.save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text()
    assert cpu_ops.ATTENTION not in text
    assert '"activation_function": "gelu_new"' in text
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model.eval()
    ids = torch.randint(0, 50257, (1, 16))
    assert torch.allclose(reloaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)


def test_lora_adapters_dropout_is_swapped_too():
    pytest.importorskip("peft")
    model = build_fast({**TINY, "lora": {"r": 4, "alpha": 8, "dropout": 0.1}})
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    ids = torch.randint(0, 50257, (2, 16))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_gradient_checkpointing_replays_the_same_masks():
    """Recomputing a block in backward draws its dropout again: from torch's restored RNG state, the same mask."""
    torch.manual_seed(0)
    plain = build_fast({**TINY})
    recomputed = build_fast({**TINY, "gradient_checkpointing": True})
    recomputed.load_state_dict(plain.state_dict())
    plain.train(), recomputed.train()
    ids = torch.randint(0, 50257, (2, 32))
    for model in (plain, recomputed):
        torch.manual_seed(5)
        model(input_ids=ids, labels=ids).loss.backward()
    for p, q in zip(plain.parameters(), recomputed.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_sparse_embedding_grad_gives_the_same_dense_gradient_for_tied_weights():
    ids = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))
    grads = []
    for sparse in (False, True):
        torch.manual_seed(0)
        lm = build_causal_lm(TINY)
        if sparse:
            assert cpu_ops.use_sparse_embedding_grad(lm)
        lm(input_ids=ids, labels=ids).loss.backward()
        grads.append(lm.get_input_embeddings().weight.grad)
    dense, from_rows = grads
    assert not from_rows.is_sparse  # summed into the output layer's dense gradient
    assert torch.allclose(from_rows, dense, rtol=0, atol=1e-7)
    assert dense[ids.unique()].abs().sum() > dense[~torch.isin(torch.arange(50257), ids)].abs().sum() / 50257


def test_sparse_embedding_grad_leaves_untied_and_frozen_embeddings_alone():
    untied = build_causal_lm({**TINY, "config": {**TINY["config"], "tie_word_embeddings": False}})
    assert not cpu_ops.use_sparse_embedding_grad(untied)  # its gradient would stay sparse, which AdamW refuses
    assert not untied.get_input_embeddings().sparse
    frozen = build_causal_lm(TINY)
    frozen.get_input_embeddings().weight.requires_grad_(False)
    assert not cpu_ops.use_sparse_embedding_grad(frozen)
