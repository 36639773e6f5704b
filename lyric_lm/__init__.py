"""lyric_lm: fine-tune GPT-2 to write song lyrics with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"

from lyric_lm.resolvers import register_resolvers

register_resolvers()  # ${lyric:...} in conf/ (lyric_lm/resolvers.py)
