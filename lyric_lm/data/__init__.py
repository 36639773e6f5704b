"""Reading lyrics, tokenizing and packing them, and the LyricsDataModule that batches them."""

from lyric_lm.data.datamodule import LyricsDataModule

__all__ = ["LyricsDataModule"]
