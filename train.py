"""Fine-tune GPT-2 on lyrics: `python train.py [group=option ...] [key=value ...]` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error
from lyric_lm.run.dirs import prepare_run_dir
from lyric_lm.speed import rename_old_options


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lyric_lm.pipeline import train  # imported here so `--help` and `--cfg` stay fast
    from lyric_lm.run.sweep import recording_failure

    return exit_on_user_error(lambda: recording_failure(cfg, train))


if __name__ == "__main__":
    sys.argv[1:], notes = rename_old_options(sys.argv[1:])  # model.compile=true -> speed.compile=true, ...
    print(*notes, sep="\n", file=sys.stderr, end="\n" if notes else "")
    if (problem := prepare_run_dir(sys.argv[1:])) is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
