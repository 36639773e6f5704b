"""Check a composed config before any heavy work (every problem at once, one line each), and the settings that
only the data can check (EpochCheck)."""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from lyric_lm.compat import PRECISIONS
from lyric_lm.data.reading import path_problem
from lyric_lm.errors import LyricLMError
from lyric_lm.hub import GPT2_SHAPES


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of `cfg` found without loading a model, reading data or looking for checkpoints."""
    problems: list[str] = added_key_problems(cfg)
    get = _Getter(cfg, problems)
    for check in (optim_problems, trainer_problems, data_problems, model_problems, callback_problems, value_problems):
        check(cfg, get, problems)
    return problems


def optim_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """The `optim` group: learning rate, weight decay, betas, warmup."""
    lr = get.number("optim.lr")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        problems.append(f"optim.lr={lr} must be a positive number, e.g. optim.lr=5e-5")
    wd = get.number("optim.weight_decay")
    if wd is not None and wd < 0:
        problems.append(f"optim.weight_decay={wd} must be >= 0")
    eps = get.number("optim.eps", required=False)
    if eps is not None and eps <= 0:
        problems.append(f"optim.eps={eps} must be > 0, e.g. optim.eps=1e-8")
    betas = cfg.optim.get("betas")
    if betas is not None and not (
        len(betas) == 2 and all(isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    ):
        problems.append(f"optim.betas={list(betas)} must be two numbers in [0, 1), e.g. optim.betas=[0.9,0.999]")
    ratio = get.number("optim.warmup_ratio", required=False)
    if ratio is not None and not 0 <= ratio < 1:
        problems.append(f"optim.warmup_ratio={ratio} must be in [0, 1): a fraction of the run's optimizer steps")
    warmup = get.integer("optim.warmup_steps", required=False)
    max_steps = cfg.trainer.get("max_steps")  # checked in trainer_problems
    if warmup is not None and warmup < 0:
        problems.append(f"optim.warmup_steps={warmup} must be >= 0 (or null to use optim.warmup_ratio)")
    elif warmup is not None and isinstance(max_steps, int) and max_steps > 0 and warmup >= max_steps:
        problems.append(
            f"optim.warmup_steps={warmup} is not shorter than the run (trainer.max_steps={max_steps}); "
            "lower the warmup or train longer"
        )


def trainer_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """The `trainer` group: the run's length, accumulation, device, precision, clipping, intervals."""
    max_steps = get.integer("trainer.max_steps")
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        problems.append(f"trainer.max_steps={max_steps} must be -1 (use max_epochs) or a positive number of steps")
    max_epochs = get.integer("trainer.max_epochs", required=False)
    if max_steps == -1 and (max_epochs is None or max_epochs < 1):
        problems.append("the run has no end: set trainer.max_epochs >= 1 or trainer.max_steps > 0")
    accumulate = get.integer("trainer.accumulate_grad_batches")
    if accumulate is not None and accumulate < 1:
        problems.append(f"trainer.accumulate_grad_batches={accumulate} must be >= 1 (1: no accumulation)")
    accelerator = str(cfg.trainer.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        problems.append(
            f"trainer.accelerator={accelerator} but torch sees no CUDA GPU here; use trainer.accelerator=cpu "
            "(or trainer=auto), or install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        problems.append("trainer.accelerator=mps but this machine has no Apple GPU; use trainer.accelerator=cpu")
    precision = cfg.trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        known = ", ".join(p for p in sorted(PRECISIONS) if "-" in p and "transformer" not in p)
        problems.append(f"trainer.precision={precision} is not a known precision; use one of {known}")
    clip = get.number("trainer.gradient_clip_val", required=False)
    if clip is not None and clip < 0:
        problems.append(f"trainer.gradient_clip_val={clip} must be >= 0 (or null for no clipping)")
    log_every = get.integer("trainer.log_every_n_steps", required=False)
    if log_every is not None and log_every < 1:
        problems.append(f"trainer.log_every_n_steps={log_every} must be >= 1")
    for key in ("trainer.limit_train_batches", "trainer.val_check_interval"):
        value = get.number(key, required=False)
        if value is not None and value <= 0:
            problems.append(f"{key}={value} must be > 0 (a float is a fraction of an epoch, an int a count)")


def data_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """The `data` group: batch, workers, fractions, block size against the model's context, the lyrics path."""
    batch_size = get.integer("data.batch_size")
    if batch_size is not None and batch_size < 1:
        problems.append(f"data.batch_size={batch_size} must be >= 1")
    workers = get.integer("data.num_workers", required=False)
    if workers is not None and workers < 0:
        problems.append(f"data.num_workers={workers} must be >= 0 (0 loads in the main process)")
    val_fraction = get.number("data.val_fraction", required=False)
    if val_fraction is not None and not 0 < val_fraction < 1:
        problems.append(f"data.val_fraction={val_fraction} must be between 0 and 1 (exclusive), e.g. 0.1")
    block_size = get.integer("data.block_size")
    context = model_context(cfg)
    if block_size is not None and block_size < 2:
        problems.append(f"data.block_size={block_size} must be >= 2 tokens")
    elif block_size is not None and (problem := block_size_problem(block_size, context)) is not None:
        problems.append(problem)
    data_problem = path_problem(cfg.data.get("path"), str(cfg.data.get("format", "auto")))
    if data_problem is not None:
        problems.append(data_problem)


def model_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """The `model` group: a local model or tokenizer that is not there, an impossible shape."""
    model = cfg.model
    name = str(model.get("name_or_path"))
    if _looks_local(name) and not Path(name).expanduser().is_dir():
        problems.append(f"model.name_or_path={name} is not a directory; give a save_pretrained dir or a hub id")
    tok = model.get("tokenizer")
    if tok is not None and _looks_local(str(tok)) and not Path(str(tok)).expanduser().is_dir():
        problems.append(f"model.tokenizer={tok} is not a directory; give a tokenizer dir, a hub id or `bundled`")
    overrides = model.get("config") or {}
    n_embd, n_head = overrides.get("n_embd"), overrides.get("n_head")
    if isinstance(n_embd, int) and isinstance(n_head, int) and (n_head < 1 or n_embd % n_head):
        problems.append(f"model.config.n_embd={n_embd} must be a multiple of model.config.n_head={n_head}")


def callback_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """Checkpointing and early stopping: intervals, top-k, the metric monitored; the seed."""
    every = get.integer("callbacks.checkpoint.every_n_train_steps", required=False)
    if every is not None and every < 0:
        problems.append(f"callbacks.checkpoint.every_n_train_steps={every} must be >= 1 (or null: at validation only)")
    top_k = get.integer("callbacks.checkpoint.save_top_k", required=False)
    if top_k is not None and top_k < -1:
        problems.append(f"callbacks.checkpoint.save_top_k={top_k} must be -1 (all), 0 or a positive number")
    for key in ("callbacks.checkpoint.monitor", "callbacks.early_stopping.monitor"):
        monitor = get.value(key)
        if monitor is not None and monitor not in LOGGED_METRICS:
            problems.append(f"{key}={monitor} is not a metric the run logs; use one of {', '.join(LOGGED_METRICS)}")
    seed = get.integer("seed", required=False)
    if seed is not None and seed < 0:
        problems.append(f"seed={seed} must be >= 0")


def value_problems(cfg: DictConfig, get: _Getter, problems: list[str]) -> None:
    """Switches and counts whose wrong value would otherwise be taken silently (a string is truthy); speed."""
    for key in SWITCHES:
        value = get.value(key)
        if value is not None and not isinstance(value, bool):
            problems.append(f"{key}={value} must be true or false")
    for key, least in (("data.max_songs", 1), ("data.max_chars", 1), ("data.min_chars", 0), ("model.lora.r", 0)):
        count = get.integer(key, required=False)
        if count is not None and count < least:
            problems.append(f"{key}={count} must be >= {least}" + (" (or null: no limit)" if least else ""))
    test_fraction = get.number("data.test_fraction", required=False)
    if test_fraction is not None and not 0 <= test_fraction < 1:
        problems.append(f"data.test_fraction={test_fraction} must be in [0, 1), e.g. 0.1 (0: no test split)")
    matmul = get.value("speed.float32_matmul_precision")
    if matmul is not None and matmul not in MATMUL_PRECISIONS:
        problems.append(
            f"speed.float32_matmul_precision={matmul} is not one of {', '.join(MATMUL_PRECISIONS)} (or null: torch's)"
        )


MATMUL_PRECISIONS = ("highest", "high", "medium")  # torch.set_float32_matmul_precision


# What LyricLM logs: the metrics a checkpoint or early stopping can monitor.
LOGGED_METRICS = ("val/loss", "val/ppl", "train/loss")
SWITCHES = (
    "data.packing",
    "model.from_scratch",
    "model.gradient_checkpointing",
    "speed.tune_malloc",
    "speed.free_grads_early",
    "speed.compile",
    "speed.fused_adamw",
    "speed.fused_gelu",
    "speed.fast_dropout",
    "speed.sparse_embedding_grad",
    "export_hf",
)

# The project's own groups: every key they take is in their YAML files, so a key added with `+` is a typo.
# `model.config` passes any key on to the transformers config, so keys added there are welcome.
OWN_GROUPS = ("model", "data", "optim", "speed")
FREE_FORM = ("model.config.",)
# Names users bring from Hugging Face's run_clm.py / TrainingArguments and other trainers -> ours.
ALIASES = {
    "learning_rate": "optim.lr",
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "adam_beta1": "optim.betas",
    "adam_beta2": "optim.betas",
    "adam_epsilon": "optim.eps",
    "warmup": "optim.warmup_ratio",
    "num_warmup_steps": "optim.warmup_steps",
    "batch_size": "data.batch_size",
    "per_device_train_batch_size": "data.batch_size",
    "train_batch_size": "data.batch_size",
    "max_seq_length": "data.block_size",
    "seq_len": "data.block_size",
    "context_length": "data.block_size",
    "block_size": "data.block_size",
    "num_train_epochs": "trainer.max_epochs",
    "epochs": "trainer.max_epochs",
    "max_epochs": "trainer.max_epochs",
    "max_steps": "trainer.max_steps",
    "gradient_accumulation_steps": "trainer.accumulate_grad_batches",
    "model_name": "model.name_or_path",
    "model_name_or_path": "model.name_or_path",
    "train_file": "data.path",
    "dataset": "data.path",
    "data_path": "data.path",
    "rank": "model.lora.r",
}


def added_key_problems(
    cfg: DictConfig, overrides: list[str] | None = None, groups: set[str] | None = None
) -> list[str]:
    """Keys added with `+` to the project's own groups or the top level that no part of lyric_lm reads.

    Hydra refuses an unknown key without `+` ("not in struct"), but `+optim.learning_rate=1` adds it and the run
    would train with the setting silently ignored. Outside a Hydra run (tests composing a config) there is
    nothing to check unless `overrides` and `groups` are given.
    """
    if overrides is None:
        if not HydraConfig.initialized():
            return []
        overrides, groups = list(HydraConfig.get().overrides.task), set(HydraConfig.get().runtime.choices)
    problems = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if not override.is_add() or override.package is not None or key in groups:  # `++` sets or adds: the user's call
            continue
        top = key.split(".")[0]
        if ("." in key and top not in OWN_GROUPS) or key.startswith(FREE_FORM) or top == "hydra":
            continue
        problems.append(f"{key} is not a setting of lyric_lm (added with +); {_closest(cfg, key)}")
    return problems


def _closest(cfg: DictConfig, key: str) -> str:
    """`did you mean optim.lr?`, from known aliases or spelling; else the keys that exist there."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    siblings = [k for k in node if k != name] if isinstance(node, DictConfig) else []
    alias = ALIASES.get(name.lower())
    if alias is not None and alias != key and OmegaConf.select(cfg, alias, default="<missing>") != "<missing>":
        return f"did you mean {alias}? (drop the +: known settings are set without it)"
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        return (
            f"did you mean {f'{parent}.' if parent else ''}{close[0]}? (drop the +: known settings are set without it)"
        )
    where = f"{parent}" if parent else "the top level"
    return f"the settings of {where} are: {', '.join(sorted(map(str, siblings)))}"


def block_size_problem(block_size: int, context: int | None) -> str | None:
    """The line that refuses `data.block_size` longer than the model's context (GPT-2 has no position past it)."""
    if context is None or block_size <= context:
        return None
    return (
        f"data.block_size={block_size} exceeds the model's context of {context} tokens; use data.block_size<={context}"
    )


def model_context(cfg: DictConfig) -> int | None:
    """The model's context length in tokens, from its config alone (no weights); None when unknown offline."""
    model = cfg.model
    overrides = model.get("config") or {}
    for key in ("n_positions", "max_position_embeddings"):
        if isinstance(overrides.get(key), int):
            return overrides[key]
    name = str(model.get("name_or_path"))
    if name in GPT2_SHAPES:
        return 1024  # every published GPT-2 size
    config = Path(name).expanduser() / "config.json"
    if config.is_file():
        try:
            hf = json.loads(config.read_text(encoding="utf-8"))
        except ValueError:
            return None
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if isinstance(hf.get(key), int):
                return hf[key]
    return None


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


class _Getter:
    """Reads numbers from the config, recording a problem for a value of the wrong type."""

    def __init__(self, cfg: DictConfig, problems: list[str]):
        self.cfg, self.problems = cfg, problems

    def _value(self, key: str) -> Any:
        node = self.cfg
        for part in key.split("."):
            if node is None or part not in node:
                return None
            node = node[part]
        return node

    def value(self, key: str) -> Any:
        return self._value(key)

    def number(self, key: str, required: bool = True) -> float | None:
        value = self._value(key)
        if value is None:
            if required:
                self.problems.append(f"{key} is not set; give it a value")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key}={value} must be a number")
            return None
        return value

    def integer(self, key: str, required: bool = True) -> int | None:
        value = self.number(key, required)
        if value is not None and value != int(value):
            self.problems.append(f"{key}={value} must be a whole number")
            return None
        return None if value is None else int(value)


class EpochCheck(L.Callback):
    """Settings that can only be checked against the data: `trainer.val_check_interval` (a number of batches)
    beyond an epoch, which Lightning refuses with a traceback once fit has begun. Checked once the data is set up,
    before configure_optimizers asks Lightning for the schedule's length (where Lightning would raise)."""

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        interval = trainer.val_check_interval
        if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or trainer.fast_dev_run:
            return
        batches = epoch_batches(trainer)
        if interval > batches:
            raise LyricLMError(
                f"trainer.val_check_interval={interval} is more batches than an epoch has ({batches}); set it to "
                f"{batches} or less, a fraction of an epoch (e.g. 0.5), or trainer.check_val_every_n_epoch=null "
                "to count batches across epochs"
            )


def epoch_batches(trainer: L.Trainer) -> int:
    """Training batches per epoch on each device, as Lightning will count them (limit_train_batches applied)."""
    blocks = len(trainer.datamodule.blocks["train"])
    per_device = math.ceil(blocks / trainer.world_size)
    batches = math.ceil(per_device / trainer.datamodule.batch_size)
    limit = trainer.limit_train_batches
    return min(batches, limit) if isinstance(limit, int) else int(batches * limit)
