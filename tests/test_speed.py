"""The speed layer: presets compose as they promise, each option keeps the computation, none reaches a checkpoint."""

import subprocess
import sys

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from lyric_lm.module import LyricLM
from lyric_lm.speed import allocator, precision, rename_old_options
from lyric_lm.speed.apply import apply_speed
from tests.conftest import ROOT, compose_train

MODEL = {"name_or_path": "gpt2", "from_scratch": True, "config": {"n_layer": 1, "n_embd": 32, "n_head": 2}}
OPTIM = {"lr": 1e-3, "weight_decay": 0.01, "betas": [0.9, 0.999], "warmup_steps": None, "warmup_ratio": 0.1}
CPU_OPTIONS = ("fused_adamw", "fused_gelu", "fast_dropout", "sparse_embedding_grad")


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_(value: bool):
        monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: value)

    return set_


def speed_of(cfg) -> dict:
    return OmegaConf.to_container(cfg.speed, resolve=True)


def test_tune_malloc_takes_effect_on_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_malloc_tuned", False)
    assert allocator.tune_malloc() is True
    assert allocator.malloc_keeps_freed_memory()  # gradients are then freed right after each step


def test_cpu_preset_picks_bf16_only_where_the_cpu_has_it(cpu_bf16, tmp_path):
    cpu_bf16(True)
    cfg = compose_train("trainer=cpu", output_dir=tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.accelerator == "cpu"
    speed = speed_of(cfg)
    assert all(speed[k] for k in CPU_OPTIONS)
    assert speed["compile"] is False
    assert cfg.model.loss_chunk is None  # measured slower on CPU (BENCHMARKS.md)
    assert cfg.trainer.max_epochs == 3  # the rest of trainer/default.yaml is kept
    cpu_bf16(False)
    assert compose_train("trainer=cpu", output_dir=tmp_path).trainer.precision == "32-true"


def test_gpu_preset_has_bf16_tf32_fused_compile(tmp_path):
    cfg = compose_train("trainer=gpu", output_dir=tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    speed = speed_of(cfg)
    assert speed["float32_matmul_precision"] == "high"
    assert speed["fused_adamw"]
    assert speed["compile"]
    assert not speed["fast_dropout"]  # CPU-only; on a GPU torch's own dropout and GELU are fast


def test_auto_preset_without_cuda_is_the_cpu_preset(cpu_bf16, monkeypatch, tmp_path):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cpu_bf16(True)
    auto = compose_train("trainer=auto", output_dir=tmp_path)
    cpu = compose_train("trainer=cpu", output_dir=tmp_path)
    assert OmegaConf.to_container(auto.trainer, resolve=True) == OmegaConf.to_container(cpu.trainer, resolve=True)
    assert speed_of(auto) == speed_of(cpu)


def test_defaults_keep_every_speed_option_off_and_speed_alone_changes_only_speed(tmp_path):
    cfg = compose_train(output_dir=tmp_path)
    assert cfg.trainer.precision == "32-true"
    assert not any(speed_of(cfg)[k] for k in (*CPU_OPTIONS, "compile"))
    assert speed_of(cfg)["tune_malloc"]  # memory handling that changes no number stays on
    with_speed = compose_train("speed=cpu", output_dir=tmp_path)
    assert (with_speed.trainer, with_speed.model, with_speed.optim) == (cfg.trainer, cfg.model, cfg.optim)
    assert all(speed_of(with_speed)[k] for k in CPU_OPTIONS)


def test_speed_on_the_command_line_wins_over_the_trainer_preset(tmp_path):
    for order in (["trainer=cpu", "speed=off"], ["speed=off", "trainer=cpu"]):
        cfg = compose_train(*order, output_dir=tmp_path)
        assert cfg.trainer.accelerator == "cpu"
        assert not any(speed_of(cfg)[k] for k in CPU_OPTIONS), order


def test_presets_keep_the_experiments_model(tmp_path):
    cfg = compose_train("experiment=quickstart", "trainer=cpu", output_dir=tmp_path)
    assert cfg.model.config.n_layer == 2  # tiny, from the experiment
    assert cfg.trainer.max_epochs == 12
    assert cfg.speed.fused_adamw is True


def test_old_option_names_are_taken_under_their_new_names(tmp_path):
    args, notes = rename_old_options(["model.compile=true", "optim.fused=false", "+runtime.tune_malloc=false", "x=1"])
    assert args == ["speed.compile=true", "speed.fused_adamw=false", "speed.tune_malloc=false", "x=1"]
    assert notes[0] == "note: model.compile is now speed.compile; taken as speed.compile=true"
    # From the command line: the composed config has the new key, the note goes to stderr.
    out = subprocess.run(
        [sys.executable, "train.py", "experiment=quickstart", "model.fused_gelu=true", "--cfg", "job"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert OmegaConf.create(out.stdout).speed.fused_gelu is True
    assert "note: model.fused_gelu is now speed.fused_gelu" in out.stderr


class GradProbe(L.Callback):
    """Records, at the start of each batch, whether any gradient is held."""

    def __init__(self):
        self.held = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.held.append(any(p.grad is not None for p in pl_module.parameters()))


class GradsAfterStep(L.Callback):
    """Records, after each optimizer step, the gradients' total norm and whether any is sparse."""

    def __init__(self):
        self.norms, self.sparse = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.nn.utils.get_total_norm(grads).item())
        self.sparse.append(any(g.is_sparse for g in grads))


def fit(module: LyricLM, speed: dict, ids: torch.Tensor, probe: L.Callback, **trainer_args) -> L.Trainer:
    """Trains `module` with the speed options `speed` on `ids` in batches of 2 with a bare Trainer."""
    loader = torch.utils.data.DataLoader([{"input_ids": x, "labels": x} for x in ids], batch_size=2)
    callbacks = [probe, *apply_speed(speed, module)]  # as pipeline.train applies them
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def grads_held_at_batch_start(speed: dict, accumulate: int = 2) -> list[bool]:
    probe = GradProbe()
    ids = torch.randint(0, 50257, (12, 16))
    trainer = fit(LyricLM(MODEL, OPTIM), speed, ids, probe, max_epochs=1, accumulate_grad_batches=accumulate)
    assert trainer.global_step == 6 // accumulate
    return probe.held


def test_gradients_are_freed_after_each_optimizer_step_when_the_allocator_keeps_memory(monkeypatch):
    # speed.tune_malloc ran: freed memory stays mapped, so freeing right after the step only lowers the peak
    # (Lightning would zero them inside the next step, after its forward).
    monkeypatch.setattr(allocator, "_malloc_tuned", True)
    # batches 0, 2, 4 open an accumulation window with no gradient; 1, 3, 5 carry the first half's
    assert grads_held_at_batch_start({"tune_malloc": False}) == [False, True, False, True, False, True]


def test_gradients_follow_lightnings_timing_under_glibc_defaults_or_when_asked(monkeypatch):
    # Freed early, glibc would hand the block back to the OS and the next forward would fault it in again.
    monkeypatch.setattr(allocator, "_malloc_tuned", False)
    assert grads_held_at_batch_start({"tune_malloc": False}) == [False, True, True, True, True, True]
    monkeypatch.setattr(allocator, "_malloc_tuned", True)
    assert grads_held_at_batch_start({"tune_malloc": False, "free_grads_early": False})[2:] == [True] * 4


NO_DROPOUT = {**MODEL["config"], "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def train_three_steps(monkeypatch, speed: dict) -> tuple[LyricLM, GradsAfterStep]:
    monkeypatch.setattr(allocator, "_malloc_tuned", False)  # Lightning's timing: gradients still held after the step
    torch.manual_seed(0)
    module = LyricLM({**MODEL, "config": NO_DROPOUT}, {**OPTIM, "lr": 1e-4})
    ids = torch.randint(0, 50257, (6, 16), generator=torch.Generator().manual_seed(1))
    probe = GradsAfterStep()
    # gradient_clip_val far below a random init's norm (~4): every step clips
    trainer = fit(module, {"tune_malloc": False, **speed}, ids, probe, max_steps=3, gradient_clip_val=0.05)
    assert trainer.gradient_clip_val == 0.05  # the Trainer's setting is given back after the fit
    return module, probe


def test_fused_adamw_clips_inside_its_kernel_as_clip_grad_norm_does(monkeypatch):
    # speed.fused_adamw folds the clip coefficient into the fused AdamW kernel instead of a separate pass;
    # speed.sparse_embedding_grad adds the embedding's gradient as rows. Against the plain path (foreach AdamW,
    # clip_grad_norm_, dense embedding gradient), the run must be the same to rounding.
    fast, fast_probe = train_three_steps(monkeypatch, {"fused_adamw": True, "sparse_embedding_grad": True})
    plain, plain_probe = train_three_steps(monkeypatch, {})
    assert fast.trainer.optimizers[0].defaults["fused"]
    assert fast.model.get_input_embeddings().sparse
    assert not plain.model.get_input_embeddings().sparse
    for probe in (fast_probe, plain_probe):
        assert probe.norms == pytest.approx([0.05] * 3, rel=1e-4)  # .grad is left clipped, as clip_grad_norm_ leaves it
        assert probe.sparse == [False] * 3  # the tied weight's gradient is dense: AdamW and clipping see no change
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), name


def test_speed_options_stay_out_of_the_checkpoint(tmp_path):
    # A model trained with every option on (compile as trainer=gpu sets it) loads for generation as a plain model.
    module = LyricLM(MODEL, OPTIM)
    apply_speed({"tune_malloc": False, "fused_gelu": True, "fast_dropout": True, "compile": True}, module)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = LyricLM.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert set(loaded.hparams["model"]) == set(MODEL)
    assert not hasattr(loaded.model, "_compiled_call_impl") or loaded.model._compiled_call_impl is None
    assert type(loaded.model.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"
