import lightning as L
import pytest
import torch

from lyric_lm import runtime
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


class GradProbe(L.Callback):
    """Records, at the start of each batch, whether any gradient is held."""

    def __init__(self):
        self.held = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.held.append(any(p.grad is not None for p in pl_module.parameters()))


def fit(module: LyricLM, ids: torch.Tensor, probe: L.Callback, **trainer_args) -> L.Trainer:
    """Trains `module` on `ids` in batches of 2 with a bare Trainer (no logger, checkpoints or progress bar)."""
    loader = torch.utils.data.DataLoader([{"input_ids": x, "labels": x} for x in ids], batch_size=2)
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
        **trainer_args,
    )
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def grads_held_at_batch_start(accumulate: int = 2) -> list[bool]:
    probe = GradProbe()
    trainer = fit(
        LyricLM(MODEL, OPTIM),
        torch.randint(0, 50257, (12, 16)),
        probe,
        max_epochs=1,
        accumulate_grad_batches=accumulate,
    )
    assert trainer.global_step == 6 // accumulate
    return probe.held


def test_gradients_are_freed_after_each_optimizer_step_when_the_allocator_keeps_memory(monkeypatch):
    # runtime.tune_malloc ran: freed memory stays mapped, so freeing right after the step only lowers the peak
    # (Lightning would zero them inside the next step, after its forward: 0.3 GB more at GPT-2 124M).
    monkeypatch.setattr(runtime, "_malloc_tuned", True)
    # batches 0, 2, 4 open an accumulation window with no gradient; 1, 3, 5 carry the first half's
    assert grads_held_at_batch_start() == [False, True, False, True, False, True]


def test_gradients_follow_lightnings_timing_under_glibc_defaults(monkeypatch):
    # Freed early, glibc would hand the block back to the OS and the next forward would fault it in again.
    monkeypatch.setattr(runtime, "_malloc_tuned", False)
    assert grads_held_at_batch_start() == [False, True, True, True, True, True]


NO_DROPOUT = {**MODEL["config"], "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


class GradsAfterStep(L.Callback):
    """Records, after each optimizer step, the gradients' total norm and whether any is sparse."""

    def __init__(self):
        self.norms, self.sparse = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.nn.utils.get_total_norm(grads).item())
        self.sparse.append(any(g.is_sparse for g in grads))


def train_three_steps(monkeypatch, fused: bool, sparse_embedding_grad: bool) -> tuple[LyricLM, GradsAfterStep]:
    monkeypatch.setattr(runtime, "_malloc_tuned", False)  # Lightning's timing: gradients still held after the step
    torch.manual_seed(0)
    model = {**MODEL, "config": NO_DROPOUT, "sparse_embedding_grad": sparse_embedding_grad}
    module = LyricLM(model, {**OPTIM, "lr": 1e-4, "fused": fused})
    ids = torch.randint(0, 50257, (6, 16), generator=torch.Generator().manual_seed(1))
    probe = GradsAfterStep()
    fit(module, ids, probe, max_steps=3, gradient_clip_val=0.05)  # far below a random init's norm (~4): always clips
    return module, probe


def test_fused_adamw_clips_inside_its_kernel_as_clip_grad_norm_does(monkeypatch):
    # optim.fused=true folds the clip coefficient into the fused AdamW kernel (grad_scale) instead of a separate
    # pass; model.sparse_embedding_grad=true adds the embedding's gradient as rows. Against the plain path
    # (foreach AdamW, clip_grad_norm_, dense embedding gradient), the run must be the same to rounding.
    fast, fast_probe = train_three_steps(monkeypatch, fused=True, sparse_embedding_grad=True)
    plain, plain_probe = train_three_steps(monkeypatch, fused=False, sparse_embedding_grad=False)
    assert fast.model.get_input_embeddings().sparse
    assert not plain.model.get_input_embeddings().sparse
    for probe in (fast_probe, plain_probe):
        assert probe.norms == pytest.approx([0.05] * 3, rel=1e-4)  # .grad is left clipped, as clip_grad_norm_ leaves it
        assert probe.sparse == [False] * 3  # the tied weight's gradient is dense: AdamW and clipping see no change
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), name
