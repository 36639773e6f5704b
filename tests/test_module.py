import lightning as L
import torch

from lyric_lm.module import LyricLM

MODEL = {"name_or_path": "gpt2", "from_scratch": True, "config": {"n_layer": 1, "n_embd": 32, "n_head": 2}}
OPTIM = {"lr": 1e-3, "weight_decay": 0.01, "betas": [0.9, 0.999], "warmup_steps": None, "warmup_ratio": 0.1}


def test_training_step_gives_finite_lm_loss():
    module = LyricLM(MODEL, OPTIM)
    ids = torch.randint(0, 50257, (2, 16))
    loss = module.training_step({"input_ids": ids, "labels": ids}, 0)
    # A random init predicts near-uniformly over GPT-2's 50,257 tokens: loss ~ ln(50257) = 10.8.
    assert torch.isfinite(loss)
    assert 10 < loss.item() < 11.5


def test_checkpoint_loads_with_the_class_alone(tmp_path):
    module = LyricLM(MODEL, OPTIM)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = LyricLM.load_from_checkpoint(path)  # no arguments, no network: the architecture is in hparams
    ids = torch.randint(0, 50257, (1, 8))
    module.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.allclose(module(ids).logits, loaded(ids).logits)
    assert loaded.hparams.hf_config["n_layer"] == 1
