import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lyric_lm.errors import LyricLMError
from lyric_lm.optim import build_adamw, build_scheduler, param_groups, warmup_steps


@pytest.fixture(scope="module")
def tiny_model():
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))


def test_no_weight_decay_on_biases_and_layernorm(tiny_model):
    decay, no_decay = param_groups(tiny_model, weight_decay=0.1)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert no_decay_names, "biases and LayerNorm weights must be in the no-decay group"
    assert all(n.endswith("bias") or ".ln_" in n for n in no_decay_names)
    assert "transformer.h.0.ln_1.weight" in no_decay_names
    assert "transformer.h.0.attn.c_attn.weight" in {names[id(p)] for p in decay["params"]}
    # Every trainable parameter is in exactly one group (lm_head is tied to wte and counted once).
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(tiny_model.parameters()))


def lrs(total: int, warmup: int, peak: float = 1e-3) -> list[float]:
    model = torch.nn.Linear(2, 2)
    opt = build_adamw(model, lr=peak, weight_decay=0.0, betas=(0.9, 0.999))
    sched = build_scheduler(opt, warmup, total)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_warms_up_then_decays_linearly_to_zero():
    peak, total, warmup = 1e-3, 100, 10
    lr = lrs(total, warmup, peak)
    assert lr[0] == 0.0
    assert lr[5] == pytest.approx(peak / 2)
    assert lr[warmup] == pytest.approx(peak)
    assert lr[55] == pytest.approx(peak / 2)  # halfway through the decay
    assert lr[total - 1] == pytest.approx(peak / 90)
    assert lr[total] == pytest.approx(0.0)
    assert max(lr) == pytest.approx(peak)


def test_warmup_from_ratio_or_steps():
    assert warmup_steps(200, None, 0.06) == 12
    assert warmup_steps(200, 30, 0.06) == 30  # explicit steps win over the ratio
    assert warmup_steps(8, None, 0.1) == 1


@pytest.mark.parametrize(("total", "steps", "ratio"), [(10, 10, 0.0), (10, None, 1.0), (float("inf"), None, 0.1)])
def test_warmup_that_cannot_fit_is_a_user_error(total, steps, ratio):
    with pytest.raises(LyricLMError):
        warmup_steps(total, steps, ratio)
