"""LyricsDataModule: read songs, split them by song, tokenize, pack into blocks, batch."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from datasets import Dataset, DatasetDict, disable_progress_bars, load_from_disk
from torch.utils.data import DataLoader

from lyric_lm.data.packing import collate_blocks, pack_blocks, tokenize_songs
from lyric_lm.data.reading import read_songs
from lyric_lm.errors import LyricLMError

log = logging.getLogger(__name__)


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
        cache_dir: where, with several processes per node (DDP), the node's first process saves the tokenized
            blocks for the others to load: tokenization happens once per node.
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
        cache_dir: str | None = None,
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
        self.cache_dir = cache_dir
        self.blocks: DatasetDict | None = None

    def _node_cache(self) -> Path | None:
        trainer = self.trainer
        if self.cache_dir is None or trainer is None or trainer.world_size == 1:
            return None
        return Path(self.cache_dir) / f"node{trainer.node_rank}"  # a shared filesystem holds one per node

    def prepare_data(self) -> None:
        # Lightning calls this on each node's local rank 0 only, and the other ranks wait for it.
        self.blocks = self.tokenize()
        if (cache := self._node_cache()) is not None:
            self.blocks.save_to_disk(str(cache))

    def setup(self, stage: str | None = None) -> None:
        if self.blocks is None:
            cache = self._node_cache()
            self.blocks = load_from_disk(str(cache)) if cache is not None else self.tokenize()

    def tokenize(self) -> DatasetDict:
        """Read, split by song, tokenize and pack the corpus into blocks of `block_size` tokens."""
        disable_progress_bars()  # small corpora tokenize in a blink; the bars would only clutter the log
        splits = split_songs(read_songs(self.path), self.val_fraction, self.split_seed)
        tokenized = splits.map(
            tokenize_songs,
            batched=True,
            batch_size=self.map_batch_size,
            remove_columns=splits["train"].column_names,
            fn_kwargs={"tokenizer": self.tokenizer, "eos_token_id": self.tokenizer.eos_token_id},
        )
        blocks = tokenized.map(
            pack_blocks, batched=True, batch_size=self.map_batch_size, fn_kwargs={"block_size": self.block_size}
        ).with_format("torch")
        for split, ds in blocks.items():
            if len(ds) == 0:
                where = self.path or "the builtin sample"
                raise LyricLMError(
                    f"the {split} split of {where} is shorter than one block of {self.block_size} tokens; "
                    "lower data.block_size or add songs"
                )
        log.info(
            f"Tokenized {len(splits['train']) + len(splits['val'])} songs into {len(blocks['train'])} train and "
            f"{len(blocks['val'])} val blocks of {self.block_size} tokens"
        )
        return blocks

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.blocks["val"], shuffle=False)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_blocks,
            persistent_workers=self.num_workers > 0,
        )
