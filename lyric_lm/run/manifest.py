"""The run manifest: what made a run (config, code version, packages, data, tokenizer); in run dirs and checkpoints."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

import lyric_lm
from lyric_lm.data.reading import sample_path

MANIFEST = "manifest.json"
PACKAGES = ("torch", "lightning", "transformers", "tokenizers", "datasets", "hydra-core", "omegaconf", "numpy")
# Keys that say where or whether to resume, not what to train: runs differing only there have "the same config".
RESUME_KEYS = ("resume", "run_dir", "ckpt_path")


def config_hash(cfg: DictConfig) -> str:
    """A short hash of the resolved config, independent of the run's own directory, the resume keys and speed."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in (*RESUME_KEYS, "speed"):  # speed options change how steps are computed, not what is trained
        plain.pop(key, None)
    plain = OmegaConf.create(plain)
    plain.paths.output_dir = "<run>"  # every path derived from the run dir resolves the same in every run
    text = json.dumps(OmegaConf.to_container(plain, resolve=True), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit, with `-dirty` when tracked files differ from it; None outside a git checkout."""
    repo = repo or Path(lyric_lm.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def files_fingerprint(path: str | None) -> str:
    """A cheap fingerprint of the corpus files: their paths, sizes and modification times (no reading)."""
    root = sample_path() if path is None else Path(path).expanduser()
    files = sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"files:{h.hexdigest()[:16]}"


def tokenizer_summary(tokenizer) -> dict[str, Any]:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {
        "class": type(tokenizer).__name__,
        "name_or_path": getattr(tokenizer, "name_or_path", None) or None,
        "vocab_size": len(tokenizer),
        "vocab_sha256": hashlib.sha256(vocab.encode()).hexdigest()[:16],
        "eos_token": tokenizer.eos_token,
    }


def build_manifest(cfg: DictConfig, datamodule, tokenizer, resumed_from: str | None = None) -> dict[str, Any]:
    fingerprint = getattr(datamodule, "fingerprint", None) or files_fingerprint(cfg.data.get("path"))
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "lyric_lm": lyric_lm.__version__,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "config_hash": config_hash(cfg),
        "resumed_from": resumed_from,
        "data_fingerprint": fingerprint,
        "tokenizer": tokenizer_summary(tokenizer),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write `<run_dir>/manifest.json`; a resumed run keeps the earlier ones as manifest.1.json, manifest.2.json, ..."""
    path = run_dir / MANIFEST
    if path.exists():
        n = 1
        while (run_dir / f"manifest.{n}.json").exists():
            n += 1
        path.rename(run_dir / f"manifest.{n}.json")
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class RunManifest(Callback):
    """Writes the manifest into the run dir once the data is set up, and into every checkpoint (key `manifest`)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, tokenizer, resumed_from: str | None = None):
        self.cfg, self.run_dir, self.tokenizer, self.resumed_from = cfg, run_dir, tokenizer, resumed_from
        self.manifest: dict[str, Any] | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.manifest is None:
            self.manifest = build_manifest(self.cfg, trainer.datamodule, self.tokenizer, self.resumed_from)
            if trainer.is_global_zero:
                write_manifest(self.run_dir, self.manifest)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self.manifest is not None:
            checkpoint["manifest"] = self.manifest
