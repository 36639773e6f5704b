"""What a user sees on the console: the run's own lines and progress, with the libraries' notices about themselves
silenced."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from hydra.core.hydra_config import HydraConfig
from tqdm import tqdm
from transformers.utils import logging as hf_logging

# Lightning's start-up lines that say nothing about this run (a product tip, settings left at their defaults).
LIGHTNING_CHATTER = ("Tip:", "was configured so", "to estimate number of stepping batches", "GPU available:", "TPU ")

FILE_ONLY = "lyric_lm_file_only"  # a log record with this attribute set goes to train.log, not to the console


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(words in record.getMessage() for words in LIGHTNING_CHATTER)


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


def quiet_library_deprecations() -> None:
    """Deprecations inside the libraries, nothing a user can act on: torchdata's StatefulDataLoader calls an API
    torch deprecated (every epoch), Lightning's pytree helper one of torch's."""
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def quiet_library_chatter() -> None:
    """train.py: a first screen with the run's own lines (data, model size, precision, run dir), then the bar."""
    if HydraConfig.initialized():
        # Hydra's root handler already prints and files every record; Lightning's own would print each twice.
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
    for handler in logging.getLogger().handlers:  # Hydra's console handler (its file handler is a FileHandler)
        if type(handler) is logging.StreamHandler and not any(isinstance(f, _NotFileOnly) for f in handler.filters):
            handler.addFilter(_NotFileOnly())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropChatter) for f in rank_zero.filters):
        rank_zero.addFilter(_DropChatter())
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # the seed is in the config
    hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar at the export
    quiet_library_deprecations()


def quiet_libraries() -> None:
    """generate / evaluate / export: a first screen of songs and progress only."""
    hf_logging.disable_progress_bar()  # loading bars and save_pretrained's "Writing model shards"
    # transformers' info lines and once-only notices about itself (generation hints, `loss_type=None` on a model not
    # built by model.py); its errors still show.
    hf_logging.set_verbosity_error()
    quiet_library_deprecations()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, drawn only when stderr is a terminal (a log or a pipe gets no `\\r` lines), and
    erased when done: the phase lines and the results stay on screen, not a hundred finished bars."""
    return tqdm(iterable, file=sys.stderr, leave=False, disable=None, dynamic_ncols=True, **kwargs)
