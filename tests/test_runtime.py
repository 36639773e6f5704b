"""Speed presets and process settings: trainer=cpu/gpu/auto compose to what they promise; auto precision."""

import pytest
from omegaconf import OmegaConf

from lyric_lm import runtime
from tests.conftest import compose_train


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_(value: bool):
        monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: value)

    return set_


def test_tune_malloc_takes_effect_on_glibc(monkeypatch):
    monkeypatch.setattr(runtime, "_malloc_tuned", False)
    assert runtime.tune_malloc() is True
    assert runtime.malloc_keeps_freed_memory()  # LyricLM then frees gradients right after each step


def test_cpu_preset_picks_bf16_only_where_the_cpu_has_it(cpu_bf16, tmp_path):
    cpu_bf16(True)
    cfg = compose_train("trainer=cpu", output_dir=tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.optim.fused is True
    assert cfg.model.loss_chunk is None  # measured slower on CPU (BENCHMARKS.md)
    assert cfg.model.compile is False
    assert cfg.model.fused_gelu is True
    assert cfg.model.fast_dropout is True
    assert cfg.model.sparse_embedding_grad is True
    assert cfg.trainer.max_epochs == 3  # the rest of trainer/default.yaml is kept
    cpu_bf16(False)
    assert compose_train("trainer=cpu", output_dir=tmp_path).trainer.precision == "32-true"


def test_gpu_preset_has_bf16_tf32_fused_compile(tmp_path):
    cfg = compose_train("trainer=gpu", output_dir=tmp_path)
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.runtime.float32_matmul_precision == "high"
    assert cfg.optim.fused is True
    assert cfg.model.compile is True
    assert cfg.model.fast_dropout is False  # CPU-only; on a GPU torch's own dropout and GELU are fast


def test_auto_preset_without_cuda_is_the_cpu_preset(cpu_bf16, monkeypatch, tmp_path):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cpu_bf16(True)
    cfg = OmegaConf.to_container(compose_train("trainer=auto", output_dir=tmp_path), resolve=True)
    assert cfg["trainer"]["accelerator"] == "cpu"
    assert cfg["trainer"]["precision"] == "bf16-mixed"
    assert cfg["model"]["compile"] is False
    assert cfg["model"]["loss_chunk"] is None
    assert cfg["model"]["fused_gelu"] is True
    assert cfg["model"]["fast_dropout"] is True
    assert cfg["model"]["sparse_embedding_grad"] is True
    assert cfg["runtime"]["float32_matmul_precision"] is None


def test_defaults_keep_every_speed_option_off(tmp_path):
    cfg = compose_train(output_dir=tmp_path)
    assert cfg.trainer.precision == "32-true"
    assert cfg.model.compile is False
    assert cfg.model.loss_chunk is None
    assert cfg.model.fused_gelu is False
    assert cfg.model.fast_dropout is False
    assert cfg.model.sparse_embedding_grad is False
    assert cfg.optim.fused is False


def test_presets_keep_the_experiments_model(tmp_path):
    cfg = compose_train("experiment=quickstart", "trainer=cpu", output_dir=tmp_path)
    assert cfg.model.config.n_layer == 2  # tiny, from the experiment
    assert cfg.trainer.max_epochs == 12
    assert cfg.optim.fused is True
