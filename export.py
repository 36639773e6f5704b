"""Export a checkpoint as a Hugging Face model: `python export.py ckpt_path=<run>/checkpoints/last.ckpt` (README)."""

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from lyric_lm.songs.export import export  # imported here so `--help` and `--cfg` stay fast

    exit_on_user_error(lambda: export(cfg))


if __name__ == "__main__":
    main()
