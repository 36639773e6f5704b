"""Loading what a run made: a checkpoint (as data only), an exported or hub model, and the run's config beside them.

generate, export, evaluate and the playground all load through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, PreTrainedModel

from lyric_lm.errors import LyricLMError
from lyric_lm.hub import resolve_pretrained
from lyric_lm.model import merged_hf_model
from lyric_lm.module import LyricLM
from lyric_lm.run.checkpoints import read_checkpoint
from lyric_lm.tokenizer import load_tokenizer


def load_checkpoint(ckpt_path: str | Path) -> LyricLM:
    """LyricLM from a Lightning checkpoint, on CPU, offline, read as data only; one clear line for a bad file."""
    if not ckpt_path:
        raise LyricLMError("no checkpoint given; set ckpt_path=<run>/checkpoints/last.ckpt")
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        raise LyricLMError(f"ckpt_path={ckpt_path} is a directory; give a checkpoint file such as {path}/last.ckpt")
    if not path.is_file():
        raise LyricLMError(
            f"checkpoint {ckpt_path} does not exist; give a file such as outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    read_checkpoint(path, mmap=True)  # refuses code, damage and foreign files; memory-mapped: no weights are read
    return LyricLM.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()


def global_step_of(ckpt_path: str | Path) -> int | None:
    """The optimizer step a checkpoint was saved at (memory-mapped: the weights are not read again)."""
    return read_checkpoint(ckpt_path, mmap=True).get("global_step")


def hf_model_of(module: LyricLM) -> PreTrainedModel:
    """The plain transformers model inside a LyricLM: the one place adapters are folded in.

    A peft model (LoRA) is merged into its base weights on a copy, so the module keeps training unchanged
    and the export loads with `AutoModelForCausalLM` alone.
    """
    return merged_hf_model(module.model)


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run directory of a checkpoint: `<run>` for `<run>/checkpoints/x.ckpt`, else the checkpoint's folder."""
    folder = Path(ckpt_path).expanduser().resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def run_config_of(ckpt_path: str | Path) -> dict[str, Any] | None:
    """The resolved config of the run that wrote a checkpoint: its `config_resolved.yaml` when still beside it,
    else the copy in the checkpoint's manifest (runs write one into every checkpoint)."""
    path = run_dir_of(ckpt_path) / "config_resolved.yaml"
    if path.is_file():
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    config = (read_checkpoint(ckpt_path, mmap=True).get("manifest") or {}).get("config")
    return config if isinstance(config, dict) else None


def load_for_generation(
    ckpt_path: str | None = None, model_dir: str | None = None, tokenizer: str | None = None
) -> tuple[PreTrainedModel, Any]:
    """(model in eval mode, tokenizer) from a Lightning checkpoint or a save_pretrained directory / hub id."""
    if bool(ckpt_path) == bool(model_dir):
        raise LyricLMError(
            "give exactly one of ckpt_path=<run>/checkpoints/last.ckpt or model_dir=<run>/hf_model (or a hub id)"
        )
    if ckpt_path:
        module = load_checkpoint(ckpt_path)
        model_cfg = module.hparams["model"]
        tok = load_tokenizer(model_cfg["name_or_path"], tokenizer or model_cfg.get("tokenizer"))
        model = hf_model_of(module)
    else:
        path = Path(model_dir).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise LyricLMError(
                f"model_dir={model_dir} holds no model (no config.json); give a directory written by "
                "save_pretrained (e.g. <run>/hf_model, or export.py ckpt_path=... to make one) or a hub id"
            )
        if path.is_file():
            raise LyricLMError(
                f"model_dir={model_dir} is a file; give its folder, or pass a Lightning checkpoint as ckpt_path="
            )
        source, kwargs = resolve_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tok = load_tokenizer(tokenizer or source)
    return model.eval(), tok


def run_config_near(ckpt_path: str | None = None, model_dir: str | None = None) -> dict[str, Any] | None:
    """The resolved config of the run that made a checkpoint or an exported `<run>/hf_model`, when it is still there."""
    if ckpt_path and Path(ckpt_path).expanduser().is_file():
        return run_config_of(ckpt_path)
    config = Path(model_dir).expanduser().parent / "config_resolved.yaml" if model_dir else None
    if config is not None and config.is_file():
        return OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    return None
