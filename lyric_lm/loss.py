"""Causal-LM loss computed in chunks of tokens, so the (tokens x 50,257) logits never exist all at once."""

from __future__ import annotations

import torch
from torch import nn


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `labels` (-100 ignored), fused with its gradient.

    Each chunk's logits are made, turned into their gradient (softmax - one-hot) and multiplied back into
    grad(hidden) and grad(weight) within the forward pass, then freed: the same matmul FLOPs as the plain
    loss, but the working set is one chunk's logits (chunk x vocab) instead of all of them plus their
    float copy, log-softmax and gradient (4 x 512 tokens x 50,257 x 4 bytes = 0.4 GB at batch 4 x 128).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk_size: int, dtype: torch.dtype):
        n_valid = (labels != -100).sum().clamp(min=1)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        w = weight.to(dtype)
        grad_h = torch.empty_like(hidden) if need_grad else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), chunk_size):
            h = hidden[start : start + chunk_size].to(dtype)  # (c, d)
            y = labels[start : start + chunk_size]  # (c,)
            valid = y != -100
            logits = (h @ w.t()).float()  # (c, V)
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            target = logits.gather(1, y.clamp(min=0).unsqueeze(1)).squeeze(1)
            total += ((lse - target) * valid).sum()
            if need_grad:
                probs = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in place of the logits
                probs[torch.arange(y.size(0), device=y.device), y.clamp(min=0)] -= 1.0
                probs.mul_(valid.unsqueeze(1))
                g = probs.to(dtype)  # d(sum of losses)/d(logits), (c, V)
                grad_h[start : start + chunk_size] = (g @ w).to(hidden.dtype)
                grad_w.add_(g.t() @ h)
        ctx.save_for_backward(grad_h, grad_w, n_valid)
        ctx.weight_dtype = weight.dtype
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, n_valid = ctx.saved_tensors
        scale = grad_out / n_valid
        return grad_h * scale.to(grad_h.dtype), (grad_w * scale).to(ctx.weight_dtype), None, None, None


def chunked_lm_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int = 128
) -> torch.Tensor:
    """The causal-LM loss transformers computes (shift by one, mean over labels != -100), in chunks.

    Args:
        hidden: final hidden states, (B, T, d).
        weight: the output embedding (lm_head) weight, (V, d); no bias.
        labels: (B, T), the inputs themselves; position t is predicted from hidden state t - 1.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    h = hidden[:, :-1].reshape(-1, hidden.size(-1))  # (B*(T-1), d)
    y = labels[:, 1:].reshape(-1)
    with torch.autocast(device, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(h, weight, y, chunk_size, dtype)


def supports_chunked_loss(model: nn.Module) -> bool:
    """True for causal LMs whose logits are a plain bias-free linear map of `base_model`'s output (GPT-2)."""
    head = model.get_output_embeddings()
    cfg = model.config
    return (
        isinstance(head, nn.Linear)
        and head.bias is None
        and getattr(cfg, "final_logit_softcapping", None) is None
        and getattr(cfg, "logit_scale", None) is None
    )
