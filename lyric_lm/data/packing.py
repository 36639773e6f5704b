"""Tokenizing songs, then packing them into full blocks or padding them per song; pure functions for `Dataset.map`."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch

from lyric_lm.data.conditioning import with_header

IGNORE = -100  # label of positions the loss skips (transformers' convention)


def tokenize_songs(
    batch: dict[str, list], tokenizer, eos_token_id: int, condition_on: Sequence[str] = ()
) -> dict[str, list]:
    """Token ids of each song (after its conditioning header, if any) followed by EOS, so the model learns
    where a song ends."""
    texts = batch["text"]
    if condition_on:
        texts = [
            with_header(text, {f: batch[f][i] for f in condition_on}, condition_on) for i, text in enumerate(texts)
        ]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {"input_ids": [song + [eos_token_id] for song in ids]}


def pack_blocks(batch: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate songs and cut them into blocks of `block_size`; the tail shorter than a block is dropped.

    The tail is per map batch (1,000 songs by default): on average half a block lost per 1,000 songs.
    """
    ids = list(chain.from_iterable(batch["input_ids"]))
    n = len(ids) // block_size * block_size
    return {"input_ids": [ids[i : i + block_size] for i in range(0, n, block_size)]}


def pad_songs(batch: dict[str, list], block_size: int, stride: int, pad_token_id: int) -> dict[str, list]:
    """One example per song, padded to `block_size`; a longer song becomes windows starting every `stride` tokens.

    Labels are -100 on padding and on the overlap a window shares with the one before it, so every token is
    predicted once; the attention mask is 0 on padding.
    """
    out: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
    for song in batch["input_ids"]:
        start = 0
        while True:
            window = song[start : start + block_size]
            labels = list(window)
            if start:
                overlap = min(len(window), block_size - stride)
                labels[:overlap] = [IGNORE] * overlap
            pad = block_size - len(window)
            out["input_ids"].append(window + [pad_token_id] * pad)
            out["labels"].append(labels + [IGNORE] * pad)
            out["attention_mask"].append([1] * len(window) + [0] * pad)
            if start + block_size >= len(song):
                break
            start += stride
    return out


def collate_blocks(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples as int64; packed blocks get labels equal to their inputs (the model shifts them).

    Not transformers' DataCollatorForLanguageModeling: GPT-2's pad token is its EOS, and that collator
    would set every EOS label to -100, so the model would never learn to end a song.
    """
    batch = {key: torch.stack([e[key] for e in examples]).long() for key in examples[0]}  # (B, T) each
    if "labels" not in batch:
        batch["labels"] = batch["input_ids"].clone()
    return batch
