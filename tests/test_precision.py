"""CachedAutocast: bf16-mixed on CPU with autocast's weight-cast cache, safe under a nested no_grad."""

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lyric_lm.precision import CachedAutocast, cached_autocast_for


def loss_and_grads(plugin, lin, x):
    lin.zero_grad(set_to_none=True)
    with plugin.forward_context():
        loss = (lin(x).float() ** 2).mean() + (lin(x + 1).float() ** 2).mean()  # the weight used twice: one cast
    loss.backward()
    return loss.detach(), lin.weight.grad.clone()


def test_step_caches_casts_and_computes_what_lightnings_plugin_does():
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(64, 64), torch.randn(8, 64)
    plugin = CachedAutocast("cpu")
    with plugin.forward_context():
        assert torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_cache_enabled()
        assert lin(x).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    ours, lightnings = loss_and_grads(plugin, lin, x), loss_and_grads(MixedPrecision("bf16-mixed", "cpu"), lin, x)
    assert torch.equal(ours[0], lightnings[0])  # the same casts, the same forward
    # One cast shared by two uses sums their gradients in bf16 before the float32 copy: equal to bf16 rounding.
    assert torch.allclose(ours[1], lightnings[1], rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_a_nested_no_grad_forward_does_not_cut_the_gradient(no_grad):
    # Lightning #20644: a cast cached under no_grad has no autograd history; reused, the weight got no gradient.
    lin, x = torch.nn.Linear(16, 16), torch.randn(4, 16)
    with CachedAutocast("cpu").forward_context():
        with no_grad():
            lin(x)
        loss = lin(x).float().sum()
    loss.backward()
    assert lin.weight.grad is not None
    assert lin.weight.grad.abs().sum() > 0
    assert torch.no_grad.__exit__.__name__ == "__exit__"  # torch's own again after the step
    assert torch.no_grad.__exit__.__qualname__.startswith("no_grad")


def test_used_only_for_bf16_mixed_in_one_cpu_process():
    cpu = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    assert isinstance(cached_autocast_for({**cpu, "precision": "bf16-mixed"}), CachedAutocast)
    assert cached_autocast_for({**cpu, "precision": "32-true"}) is None
    assert cached_autocast_for({**cpu, "precision": "bf16-mixed", "devices": 2}) is None
    assert cached_autocast_for({**cpu, "precision": "bf16-mixed", "strategy": "ddp"}) is None
    assert cached_autocast_for({**cpu, "precision": "bf16-mixed", "accelerator": "gpu"}) is None
