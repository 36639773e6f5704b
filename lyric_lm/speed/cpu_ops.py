"""CPU model options that keep the recipe: a fused GELU, a cheaper random source for dropout, and a sparse
gradient for GPT-2's tied input embedding (what each is worth: BENCHMARKS.md, docs/speed.md).

- `gelu_new`, GPT-2's activation, runs as eight elementwise ops; `nn.GELU(approximate="tanh")` is the same
  function (within 3e-7) in one kernel.
- Dropout draws its mask with `bernoulli_`, slow on CPU. `fast_dropout` draws the same Bernoulli(1 - p) mask from a
  counter-based generator (SplitMix64, 16 bits per element) seeded from torch's generator, so `seed_everything`
  still makes runs repeatable, and keeps a 1-byte mask for backward instead of a float one. The random stream differs
  from torch's; the distribution does not (p is rounded to a multiple of 1/65536, so off by at most 7.6e-6).
  These two act only on CPU tensors outside torch.compile; on a GPU the native kernels stay in use.
- The input embedding's backward writes a dense (vocabulary x width) gradient, zero except for the rows of the
  batch's tokens, that autograd then adds into the tied output layer's gradient. `sparse_embedding_grad` makes the
  lookup's gradient sparse (just those rows); autograd adds it into the output layer's dense gradient, so `.grad` is
  dense and the same sum, and the optimizer, clipping and DDP see nothing different.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lyric_lm import compat

ATTENTION = "lyric_sdpa"  # the attention implementation registered below: SDPA, with fast_dropout when training on CPU

# SplitMix64 (Steele, Lea & Flood 2014) constants as signed int64: the golden-ratio increment and the two multipliers
_GAMMA = -7046029254386353131  # 0x9E3779B97F4A7C15
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _xorshift_(z: torch.Tensor, shift: int) -> None:
    """z ^= z >>> shift (a logical shift, on int64 tensors whose `>>` is arithmetic)."""
    t = z >> shift
    t &= (1 << (64 - shift)) - 1
    z ^= t


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask of `shape`, each element True with probability 1 - p (p rounded to 1/65536), and that
    probability. The seed comes from torch's default CPU generator."""
    n = math.prod(shape)
    seed = int(torch.randint(-(2**62), 2**62, ()))
    z = torch.arange((n + 3) // 4, dtype=torch.int64).mul_(_GAMMA).add_(seed)  # 4 x 16 random bits per word
    _xorshift_(z, 30)
    z *= _MIX1
    _xorshift_(z, 27)
    z *= _MIX2
    _xorshift_(z, 31)
    cut = round(p * 65536)
    keep = z.view(torch.int16)[:n] >= cut - 32768  # int16 values are uniform on [-32768, 32767]
    return keep.view(shape), 1 - cut / 65536


class _FastDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, q = keep_mask(x.shape, p)
        ctx.save_for_backward(keep)
        ctx.scale = 1 / q
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with the mask from `keep_mask` on CPU; `F.dropout` itself elsewhere."""
    if not training or p <= 0 or p >= 1 or x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    return _FastDropout.apply(x, p)


class FastDropout(nn.Dropout):
    """`nn.Dropout` drawing its mask with `fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training) if not self.inplace else super().forward(x)


def sdpa_fast_dropout(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, except when it would dropout on CPU: SDPA then takes its math path anyway
    (its CPU flash kernel has no dropout), which this computes the same way (float32, as SDPA's math path does
    for bf16) with `fast_dropout` on the attention weights."""
    plain = kwargs.get("position_bias") is not None or getattr(module, "num_key_value_groups", 1) > 1
    if plain or not (dropout > 0 and module.training and query.device.type == "cpu"):
        kwargs.update(dropout=dropout, scaling=scaling, is_causal=is_causal)
        return compat.sdpa_attention(module, query, key, value, attention_mask, **kwargs)
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = math_attention(query, key, value, attention_mask, dropout, scaling, is_causal)
    return out.transpose(1, 2).contiguous(), None


def math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool = True,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v over (batch, heads, tokens, head_dim), in float32, with `fast_dropout`.
    `attention_mask`: None (causal when `is_causal`), boolean (True attends) or additive, as SDPA takes it."""
    q, k, v = query.float(), key.float(), value.float()
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scaling if scaling is not None else q.shape[-1] ** -0.5)
    lowest = torch.finfo(scores.dtype).min  # not -inf: a row with nothing to attend gives zeros, not NaN
    if attention_mask is None:
        if is_causal and q.shape[-2] > 1:
            t, s = scores.shape[-2:]
            scores.masked_fill_(torch.ones(t, s, dtype=torch.bool, device=scores.device).triu_(s - t + 1), lowest)
    elif attention_mask.dtype == torch.bool:
        scores.masked_fill_(~attention_mask, lowest)
    else:
        scores = scores + attention_mask
    weights = fast_dropout(scores.softmax(-1), dropout)
    return torch.matmul(weights, v).to(query.dtype)


def register_attention() -> None:
    """Make `attn_implementation="lyric_sdpa"` known to transformers (masks as for "sdpa")."""
    compat.register_attention(ATTENTION, sdpa_fast_dropout)


def use_fused_gelu(model: nn.Module) -> int:
    """Swap transformers' `gelu_new` modules (eight elementwise ops) for the one-kernel `nn.GELU("tanh")`, the
    same function. Returns how many were swapped."""
    return _swap(model, compat.GELU_NEW, lambda _: nn.GELU(approximate="tanh"))


def use_fast_dropout(model: nn.Module) -> int:
    """Make `model`'s dropout use `fast_dropout`: its `nn.Dropout` modules, and the attention weights' dropout
    where the model runs SDPA through transformers' AttentionInterface. Returns how many modules were swapped."""
    swapped = _swap(model, nn.Dropout, lambda old: FastDropout(old.p, old.inplace))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under peft's wrapper
    if compat.runs_sdpa(base):
        register_attention()
        base.set_attn_implementation(ATTENTION)
    return swapped


def _swap(model: nn.Module, kind: type, make) -> int:
    swapped = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is kind:
                setattr(parent, name, make(child))
                swapped += 1
    return swapped


def use_sparse_embedding_grad(model: nn.Module) -> bool:
    """Give the input embedding a sparse gradient where its weight is tied to the output layer's, whose dense
    gradient it is then added into (so `.grad` stays dense). Untied, the gradient would stay sparse, which AdamW
    refuses: then nothing changes. Returns whether it applied."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = isinstance(embedding, nn.Embedding) and head is not None and head.weight is embedding.weight
    if not tied or not embedding.weight.requires_grad or embedding.max_norm is not None:
        return False
    embedding.sparse = True
    return True
