"""Where a run resumes from and writes into: `ckpt_path=`, `resume=auto [run_dir=]`, or a new run."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lyric_lm.errors import LyricLMError
from lyric_lm.run.checkpoints import LAST, check_checkpoint_file, checkpoint_files
from lyric_lm.run.manifest import MANIFEST, config_hash, read_manifest


def resolve_resume(cfg: DictConfig) -> tuple[str | None, Path]:
    """(checkpoint to resume from or None, the run dir this run writes into).

    `ckpt_path=<file>` resumes from that file into this run's dir; `resume=auto run_dir=<run>` continues
    `<run>/checkpoints/last.ckpt` in `<run>`; `resume=auto` alone continues the most recent run under the
    same runs folder (`outputs/<date>/<time>/`) with the same config, or starts a new run if there is none.
    Also refuses to write into a checkpoint folder that holds another run's checkpoints.
    """
    resume, run_dir, ckpt_path = cfg.get("resume"), cfg.get("run_dir"), cfg.get("ckpt_path")
    out = Path(str(cfg.paths.output_dir))
    if resume not in (None, False, "auto"):
        raise LyricLMError(f"resume={resume} is not an option; use resume=auto (or leave it unset)")
    if resume == "auto" and ckpt_path is not None:
        raise LyricLMError("give either ckpt_path=<file> or resume=auto, not both")
    if run_dir is not None and resume != "auto":
        raise LyricLMError(f"run_dir={run_dir} names a run to continue; add resume=auto (or drop run_dir)")

    if ckpt_path is not None:
        check_checkpoint_file(ckpt_path)
    elif resume == "auto" and run_dir is not None:
        out = Path(str(run_dir)).expanduser()
        if not out.is_dir():
            raise LyricLMError(f"run_dir={run_dir} does not exist; give the folder of an earlier run")
        ckpt_path = str(out / "checkpoints" / LAST)
        if not Path(ckpt_path).is_file():
            raise LyricLMError(f"run_dir={run_dir} holds no checkpoints/{LAST}; give another run or start a new one")
        check_checkpoint_file(ckpt_path)
    elif resume == "auto":
        found = latest_run_with(config_hash(cfg), out.parent.parent, exclude=out)
        if found is not None:
            out, ckpt_path = found, str(found / "checkpoints" / LAST)
            check_checkpoint_file(ckpt_path)

    ckpt_dir = _checkpoint_dir(cfg, out)
    resuming_here = ckpt_path is not None and Path(ckpt_path).resolve().parent == ckpt_dir.resolve()
    if checkpoint_files(ckpt_dir) and not resuming_here:
        raise LyricLMError(
            f"{ckpt_dir} already holds another run's checkpoints; continue that run with resume=auto "
            f"run_dir={out}, or start a new run in a new folder (hydra.run.dir=...)"
        )
    return (str(ckpt_path) if ckpt_path is not None else None), out


def _checkpoint_dir(cfg: DictConfig, out: Path) -> Path:
    ckpt = (cfg.get("callbacks") or {}).get("checkpoint")
    if ckpt is not None and ckpt.get("dirpath") is not None and Path(str(cfg.paths.output_dir)) == out:
        return Path(str(ckpt.dirpath))
    return out / "checkpoints"


def latest_run_with(wanted_hash: str, runs_root: Path, exclude: Path | None = None) -> Path | None:
    """The most recent run dir under `runs_root` (`<date>/<time>/`) whose manifest has `wanted_hash` and a last.ckpt."""
    candidates = []
    for manifest in runs_root.glob(f"*/*/{MANIFEST}"):
        run = manifest.parent
        if exclude is not None and run.resolve() == exclude.resolve():
            continue
        if (run / "checkpoints" / LAST).is_file() and read_manifest(run).get("config_hash") == wanted_hash:
            candidates.append(run)
    return max(candidates, key=lambda r: (r / "checkpoints" / LAST).stat().st_mtime, default=None)
