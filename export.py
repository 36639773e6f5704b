"""Export a checkpoint as a Hugging Face model: `python export.py ckpt_path=<run>/checkpoints/last.ckpt` (README)."""

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from transformers.utils import logging as hf_logging

    from lyric_lm.export import export_checkpoint  # imported here so `--help` and `--cfg` stay fast

    hf_logging.disable_progress_bar()

    out = exit_on_user_error(lambda: export_checkpoint(cfg.ckpt_path, cfg.output_dir))
    print(f"exported {cfg.ckpt_path} to {out}")


if __name__ == "__main__":
    main()
