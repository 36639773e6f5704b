"""Speed: options that change how a training step is computed, never what (conf/speed/; speed.apply applies them).

This package's top stays light: train.py renames the options' old command-line names before Hydra starts.
"""

from __future__ import annotations

# The command-line names these options had before the `speed` group, still taken (train.py rewrites them).
OLD_NAMES = {
    "model.compile": "speed.compile",
    "model.fused_gelu": "speed.fused_gelu",
    "model.fast_dropout": "speed.fast_dropout",
    "model.sparse_embedding_grad": "speed.sparse_embedding_grad",
    "optim.fused": "speed.fused_adamw",
    "runtime.tune_malloc": "speed.tune_malloc",
    "runtime.float32_matmul_precision": "speed.float32_matmul_precision",
}


def rename_old_options(args: list[str]) -> tuple[list[str], list[str]]:
    """(`args` with the old option names replaced by their speed.* names, a note per renamed option)."""
    renamed, notes = [], []
    for arg in args:
        key, eq, value = arg.partition("=")
        prefix = key[: len(key) - len(key.lstrip("+~"))]
        new = OLD_NAMES.get(key.lstrip("+~")) if eq else None
        if new is None:
            renamed.append(arg)
            continue
        renamed.append(f"{prefix.replace('+', '')}{new}={value}")
        notes.append(f"note: {key.lstrip('+~')} is now {new}; taken as {new}={value}")
    return renamed, notes
