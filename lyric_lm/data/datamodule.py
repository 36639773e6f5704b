"""LyricsDataModule: read songs, split them by song, tokenize, pack into blocks, batch."""

from __future__ import annotations

import lightning as L
import torch
from datasets import Dataset, DatasetDict, disable_progress_bars
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from lyric_lm.data.packing import collate_blocks, pack_blocks, tokenize_songs
from lyric_lm.data.reading import read_songs
from lyric_lm.errors import LyricLMError


def split_songs(songs: Dataset, val_fraction: float, seed: int) -> DatasetDict:
    """Train/validation split by song (before packing), so no song contributes to both."""
    n_val = round(val_fraction * len(songs))
    if not 1 <= n_val < len(songs):
        raise LyricLMError(
            f"data.val_fraction={val_fraction} of {len(songs)} songs leaves a split empty; "
            "use a fraction that gives both splits at least one song, or add songs"
        )
    parts = songs.train_test_split(test_size=n_val, seed=seed, shuffle=True)
    return DatasetDict(train=parts["train"], val=parts["test"])


class LyricsDataModule(L.LightningDataModule):
    """Batches of packed token blocks from a lyrics corpus.

    Args:
        tokenizer: the model's tokenizer (its EOS token separates songs).
        path: a lyrics `.txt` file or folder; None reads the builtin sample.
        block_size: tokens per training example.
        split_seed: seeds the song-level split, independent of the run's seed so sweeps compare on one split.
    """

    def __init__(
        self,
        tokenizer,
        path: str | None = None,
        block_size: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 1234,
        map_batch_size: int = 1000,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.path = path
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.map_batch_size = map_batch_size
        self.blocks: DatasetDict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.blocks is not None:
            return
        disable_progress_bars()  # small corpora tokenize in a blink; the bars would only clutter the log
        splits = split_songs(read_songs(self.path), self.val_fraction, self.split_seed)
        tokenized = splits.map(
            tokenize_songs,
            batched=True,
            batch_size=self.map_batch_size,
            remove_columns=splits["train"].column_names,
            fn_kwargs={"tokenizer": self.tokenizer, "eos_token_id": self.tokenizer.eos_token_id},
        )
        self.blocks = tokenized.map(
            pack_blocks, batched=True, batch_size=self.map_batch_size, fn_kwargs={"block_size": self.block_size}
        ).with_format("torch")
        for split, ds in self.blocks.items():
            if len(ds) == 0:
                where = self.path or "the builtin sample"
                raise LyricLMError(
                    f"the {split} split of {where} is shorter than one block of {self.block_size} tokens; "
                    "lower data.block_size or add songs"
                )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["val"], shuffle=False)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        # Stateful: Lightning saves its position in checkpoints, so a resumed run continues mid-epoch with the very
        # next batch. Two generators seeded by the run's seed, so that batching never draws from the global RNG
        # (dropout's) and the shuffle's generator serves the shuffle alone: every epoch's order and every dropout
        # mask are then the same in a resumed run as in an uninterrupted one.
        seed = torch.initial_seed()
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed)) if shuffle else None
        return StatefulDataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_blocks,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(seed + 1),
        )
