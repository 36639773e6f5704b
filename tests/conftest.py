"""Shared fixtures: composed Hydra configs, a small lyrics corpus, offline environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small enough that a training step takes a few milliseconds, still GPT-2's architecture and vocabulary.
TINY = [
    "model=tiny",
    "model.config.n_layer=1",
    "model.config.n_embd=32",
    "model.config.n_head=2",
    "data.block_size=32",
    "data.batch_size=4",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.samples.max_new_tokens=8",  # sample songs at each validation, kept short
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """No test reaches the network: the hub endpoint is a closed local port and the HF cache is empty."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("LYRIC_LM_CACHE", str(tmp_path_factory.mktemp("lyric_lm_cache")))  # tokenized data cache


def compose_train(*overrides: str, output_dir: Path | None = None) -> DictConfig:
    """The config `python train.py *overrides` would run, with its outputs under `output_dir`."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def write_corpus(path: Path, n_songs: int = 30, lines: int = 12) -> Path:
    """A lyrics file in the project's format with distinct, deterministic songs."""
    words = [
        "night",
        "road",
        "river",
        "fire",
        "heart",
        "light",
        "rain",
        "home",
        "dream",
        "city",
        "wind",
        "sky",
        "gold",
        "stone",
        "blue",
        "morning",
    ]
    songs = []
    for i in range(n_songs):
        body = [" ".join(words[(i * 7 + j * 3 + k) % len(words)] for k in range(5)) + f" {i}" for j in range(lines)]
        songs.append(f"title: Song {i}\nartist: Band {i % 4}\ngenre: folk\n\n[Verse]\n" + "\n".join(body))
    path.write_text("\n===\n".join(songs) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "songs.txt")


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    """`python train.py *args` in `cwd`, as a user runs it (offline, output captured)."""
    return run_script(ROOT / "train.py", *args, cwd=cwd)


def run_script(script: Path, *args: str, cwd) -> subprocess.CompletedProcess:
    """`python script *args` in `cwd` (offline, output captured, 10 minutes at most)."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_env() -> dict[str, str]:
    """Environment for train.py subprocesses: offline and unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny training run: 3 optimizer steps, one validation at step 3, its exported hf_model/."""
    from lyric_lm.pipeline import train

    root = tmp_path_factory.mktemp("tiny_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        mp.setenv("HF_HOME", str(root / "hf_home"))
        corpus = write_corpus(root / "songs.txt")
        overrides = [f"data.path={corpus}", "trainer.max_steps=3", "trainer.val_check_interval=3"]
        overrides += ["trainer.limit_val_batches=2"]
        train(compose_train(*TINY, *overrides, output_dir=root / "run"))
    return root / "run"
