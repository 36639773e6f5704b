"""The `${lyric:...}` config resolvers: machine-dependent defaults and run-dir names, resolved when Hydra composes."""

from __future__ import annotations

from omegaconf import OmegaConf

from lyric_lm.run.dirs import job_label, new_dir
from lyric_lm.speed.precision import auto_accelerator, auto_precision


def _resolve(name: str, *args):
    if name == "auto_precision":  # ${lyric:auto_precision} or ${lyric:auto_precision,cpu}
        return auto_precision(*args)
    if name == "gpu_else":  # ${lyric:gpu_else,A,B}: A when a CUDA GPU is present, else B
        return args[0] if auto_accelerator() == "gpu" else args[1]
    if name == "new_dir":  # ${lyric:new_dir,outputs/...}: a run dir no other run shares (lyric_lm/run/dirs.py)
        return new_dir(*args)
    if name == "job_label":  # ${lyric:job_label[,default]}: a sweep job's name, from what it varies; default elsewhere
        return job_label() or (args[0] if args else "")
    raise ValueError(f"unknown ${{lyric:{name}}}; known: auto_precision, gpu_else, new_dir, job_label")


def register_resolvers() -> None:
    """Register `${lyric:auto_precision[,accelerator]}`, `${lyric:gpu_else,A,B}`, `${lyric:new_dir,path}` and
    `${lyric:job_label[,default]}`."""
    if not OmegaConf.has_resolver("lyric"):
        OmegaConf.register_new_resolver("lyric", _resolve)
