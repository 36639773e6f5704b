"""build_causal_lm(): the causal LM a run trains, pretrained or from a config, with LoRA and checkpointing."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, PreTrainedModel

from lyric_lm.errors import LyricLMError
from lyric_lm.hub import GPT2_SHAPES, resolve_pretrained


def build_config(name_or_path: str, overrides: dict[str, Any] | None = None):
    """The architecture of `name_or_path` (GPT-2 shapes are known offline) with `overrides` applied."""
    overrides = dict(overrides or {})
    if name_or_path in GPT2_SHAPES:
        n_layer, n_embd, n_head = GPT2_SHAPES[name_or_path]
        return GPT2Config(**{"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, **overrides})
    source, kwargs = resolve_pretrained(name_or_path)
    return AutoConfig.from_pretrained(source, **kwargs, **overrides)


def build_causal_lm(model_cfg: dict[str, Any], hf_config: dict[str, Any] | None = None) -> nn.Module:
    """A causal LM from the `model` config group, with gradient checkpointing and LoRA as it asks.

    `hf_config` (saved in every checkpoint) rebuilds the exact architecture with no download, so a
    checkpoint loads offline; its weights then come from the checkpoint's state dict (LoRA included:
    the same `model.lora` settings rebuild the same adapter layout).
    """
    model = build_base_lm(model_cfg, hf_config)
    if getattr(model, "loss_type", None) is None:
        # transformers picks the loss by class name, and "GPT2LMHeadModel" names none: it would warn at the first
        # step and use this one anyway.
        model.loss_type = "ForCausalLM"
    if model_cfg.get("gradient_checkpointing", False):
        # Recompute each block's activations in backward: ~1/n_layer of the activation memory for ~30% more
        # compute. Non-reentrant checkpointing also works when the embeddings are frozen (LoRA).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    lora = model_cfg.get("lora") or {}
    if lora.get("r", 0) > 0:
        model = add_lora(model, **lora)
    return model


def add_lora(
    model: PreTrainedModel, r: int, alpha: float, dropout: float = 0.0, target_modules: list[str] | None = None
) -> nn.Module:
    """Freeze `model` and add LoRA adapters (rank `r`, scale alpha/r) to `target_modules`, via peft."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise LyricLMError("model.lora.r > 0 needs peft: pip install 'lyric-lm[lora]' (or set model.lora.r=0)") from err
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else None,  # None: peft's default for the model
        # GPT-2's attention and MLP layers are Conv1D, whose weight is stored transposed (in, out).
        fan_in_fan_out=model.config.model_type == "gpt2",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. a target module the model does not have
        raise LyricLMError(f"model.lora.target_modules={target_modules}: {str(err).splitlines()[0]}") from err


def merged_hf_model(model: nn.Module) -> PreTrainedModel:
    """The plain transformers model to export: LoRA adapters merged into a copy of the weights, else `model`."""
    if hasattr(model, "merge_and_unload"):  # a peft model
        return copy.deepcopy(model).merge_and_unload()  # a copy: the module keeps training/saving its adapters
    return model


def parameters_line(model: nn.Module) -> str:
    """`model: 1,179,648 of 125,619,456 parameters trainable (0.94%)`, for the start of a run."""
    trainable, total = count_parameters(model)
    return f"model: {trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def build_base_lm(model_cfg: dict[str, Any], hf_config: dict[str, Any] | None = None) -> PreTrainedModel:
    """The transformers model itself: rebuilt from a checkpoint's config, from scratch, or pretrained."""
    if hf_config is not None:
        cfg = dict(hf_config)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    name = model_cfg["name_or_path"]
    overrides = model_cfg.get("config") or {}
    if model_cfg.get("from_scratch", False):
        return AutoModelForCausalLM.from_config(build_config(name, overrides))
    source, kwargs = resolve_pretrained(name)
    return AutoModelForCausalLM.from_pretrained(source, **kwargs, **overrides)
