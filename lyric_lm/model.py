"""build_causal_lm(): the transformers causal LM a run trains, pretrained or built from a config."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, PreTrainedModel

from lyric_lm.hub import GPT2_SHAPES, resolve_pretrained


def build_config(name_or_path: str, overrides: dict[str, Any] | None = None):
    """The architecture of `name_or_path` (GPT-2 shapes are known offline) with `overrides` applied."""
    overrides = dict(overrides or {})
    if name_or_path in GPT2_SHAPES:
        n_layer, n_embd, n_head = GPT2_SHAPES[name_or_path]
        return GPT2Config(**{"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, **overrides})
    source, kwargs = resolve_pretrained(name_or_path)
    return AutoConfig.from_pretrained(source, **kwargs, **overrides)


def build_causal_lm(model_cfg: dict[str, Any], hf_config: dict[str, Any] | None = None) -> PreTrainedModel:
    """A causal LM from the `model` config group.

    `hf_config` (saved in every checkpoint) rebuilds the exact architecture with no download, so a
    checkpoint loads offline; its weights then come from the checkpoint's state dict.
    """
    if hf_config is not None:
        cfg = dict(hf_config)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    name = model_cfg["name_or_path"]
    overrides = model_cfg.get("config") or {}
    if model_cfg.get("from_scratch", False):
        return AutoModelForCausalLM.from_config(build_config(name, overrides))
    source, kwargs = resolve_pretrained(name)
    return AutoModelForCausalLM.from_pretrained(source, **kwargs, **overrides)
