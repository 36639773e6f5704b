"""A playground in the browser: `python app.py run_dir=<run>`, then open http://127.0.0.1:7860 (see README)."""

import hydra
from omegaconf import DictConfig

from lyric_lm.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="app")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: serve(cfg))


def serve(cfg: DictConfig) -> None:
    # Imported here: `--help` and `--cfg` stay fast, and a missing Gradio is one line from exit_on_user_error.
    from lyric_lm.songs.app import serve

    serve(cfg)


if __name__ == "__main__":
    main()
