"""Songs from a trained model: loading it, sampling, export, evaluation and form (rhyme, syllables)."""

from lyric_lm.songs.loading import load_for_generation
from lyric_lm.songs.sampling import (
    HEADER_FIELDS,
    Sampling,
    SongProgress,
    context_length,
    format_songs,
    generate_songs,
    header_order,
    read_prompts,
    song_prompt,
    write_jsonl,
)

__all__ = [
    "HEADER_FIELDS",
    "Sampling",
    "SongProgress",
    "context_length",
    "format_songs",
    "generate_songs",
    "header_order",
    "load_for_generation",
    "read_prompts",
    "song_prompt",
    "write_jsonl",
]
