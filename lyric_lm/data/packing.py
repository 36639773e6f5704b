"""Tokenizing songs and packing them into fixed-length blocks; pure functions for `Dataset.map`."""

from __future__ import annotations

from itertools import chain

import torch


def tokenize_songs(batch: dict[str, list], tokenizer, eos_token_id: int) -> dict[str, list]:
    """Token ids of each song followed by EOS, so the model learns where a song ends."""
    ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
    return {"input_ids": [song + [eos_token_id] for song in ids]}


def pack_blocks(batch: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate songs and cut them into blocks of `block_size`; the tail shorter than a block is dropped."""
    ids = list(chain.from_iterable(batch["input_ids"]))
    n = len(ids) // block_size * block_size
    return {"input_ids": [ids[i : i + block_size] for i in range(0, n, block_size)]}


def collate_blocks(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack packed blocks; labels are the inputs (the model shifts them).

    Not transformers' DataCollatorForLanguageModeling: GPT-2's pad token is its EOS, and that collator
    would set every EOS label to -100, so the model would never learn to end a song.
    """
    input_ids = torch.stack([e["input_ids"] for e in examples])  # (B, T)
    return {"input_ids": input_ids, "labels": input_ids.clone()}
