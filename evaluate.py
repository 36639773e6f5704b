"""Evaluate a checkpoint: `python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt`, or score lyrics without a
model: `python evaluate.py songs_file=<songs.jsonl|songs.txt>` (see README)."""

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from lyric_lm.songs.evaluation import evaluate  # imported here so `--help` and `--cfg` stay fast

    exit_on_user_error(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
