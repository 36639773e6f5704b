"""Sample songs from a checkpoint or an exported model: `python generate.py ckpt_path=... prompt="..."` (see README)."""

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    from lyric_lm.songs.sampling import generate  # imported here so `--help` and `--cfg` stay fast

    exit_on_user_error(lambda: generate(cfg))


if __name__ == "__main__":
    main()
