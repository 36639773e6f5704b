"""Run dirs and names: each run claims a folder of its own, a run refused before it started removes only what it
made, and a sweep job is named by what it varies.

Hydra's default `outputs/<date>/<time>` names one folder per second: two runs started in the same second (a script
starting several, a cluster array) would write into the same folder and overwrite each other's checkpoints. The
`${lyric:new_dir,<path>}` resolver (conf/hydra/default.yaml) claims `<path>` with an atomic mkdir, or `<path>_2`,
`<path>_3`, ... when another process got there first, so the claim is safe between processes and machines sharing
a file system.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode

# Folders this process created, by resolved path: the only ones it may remove again.
_created: set[Path] = set()
# base path -> the folder claimed for it: Hydra resolves `hydra.run.dir` several times during one run.
_claimed: dict[str, str] = {}


def new_dir(base: str) -> str:
    """Claim a new folder `base` (or `base_2`, `base_3`, ... if taken) and return its path, the same on every call."""
    if base in _claimed and Path(_claimed[base]).is_dir():
        return _claimed[base]
    parent = Path(base).parent
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    _created.update(p.resolve() for p in missing)
    for n in range(1, 10_000):
        path = base if n == 1 else f"{base}_{n}"
        try:
            os.mkdir(path)  # atomic: exactly one process succeeds for each name
        except FileExistsError:
            continue
        _created.add(Path(path).resolve())
        _claimed[base] = path
        return path
    raise FileExistsError(f"no free run dir next to {base}")


def prepare_run_dir(argv: list[str]) -> str | None:
    """Before Hydra starts: the problem with where this run will write, if any, as one line (None: fine).

    Also notes a `hydra.run.dir=<dir>` that does not exist yet, as one this process will make. Hydra itself
    would meet a read-only folder with a traceback while making the run dir.
    """
    if any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for a in argv):
        return None  # prints and exits: writes nothing
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    target = next((a.split("=", 1)[1].strip("'\"") for a in argv if a.startswith(key)), "outputs")
    path = Path(target).expanduser().absolute()
    if not multirun:
        _created.update(p.resolve() for p in (path, *path.parents) if not p.exists())
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is not a folder" if not existing.is_dir() else "cannot be written (read-only or no permission)"
        return (
            f"the run dir {path} cannot be made: {existing} {why}; "
            f"start from a folder you can write to, or set {key}<a writable dir>"
        )
    return None


def created_here(path: Path) -> bool:
    """True if this process made `path` (through `new_dir`)."""
    return path.resolve() in _created


def discard_unused_run_dir(run_dir: Path, ours: frozenset[str] = frozenset({".hydra", "train.log"})) -> bool:
    """Remove a run dir that this process created for a run refused before it started, if it holds only `ours`.

    Hydra writes `.hydra/` and `train.log` before train() runs; a run refused for bad settings then leaves no
    trace. A folder this process did not create (`hydra.run.dir=` naming an older one) is never removed, nor one
    holding anything else. Returns True if it was removed.
    """
    if not run_dir.is_dir() or not created_here(run_dir) or not {p.name for p in run_dir.iterdir()} <= ours:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.resolve().parents:  # outputs/<date>/ (and outputs/) when made for this run alone
        if not created_here(parent) or any(parent.iterdir()):
            break
        parent.rmdir()
    return True


def swept_overrides() -> list[str]:
    """`key=value` overrides of this Hydra job that say what a run varies (Hydra's own settings left out)."""
    if not HydraConfig.initialized():
        return []
    return [o.lstrip("+~") for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hydra.")]


def job_label(argv: list[str] | None = None) -> str:
    """A sweep job's name in TensorBoard, from what the sweep varies (`lr=0.0001,block_size=16`); "" outside one.

    `${lyric:job_label}` in conf/logger/*.yaml: the events go to `<job>/tensorboard/<label>/`, so TensorBoard's run
    list names each job by its settings rather than by its number alone. What varies: the job's overrides less
    those the command line (`argv`) sets to one value, so sweeper-chosen values (Optuna's) count too.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return ""
    fixed = fixed_keys(sys.argv[1:] if argv is None else argv)
    pairs = [o.split("=", 1) for o in swept_overrides() if "=" in o and o.split("=", 1)[0] not in fixed]
    short = [key.rsplit(".", 1)[-1] for key, _ in pairs]
    names = [s if short.count(s) == 1 else key for s, (key, _) in zip(short, pairs, strict=True)]
    label = ",".join(f"{name}={value}".replace("/", "_") for name, (_, value) in zip(names, pairs, strict=True))
    return label[:120]  # a folder name: well inside the file system's 255 bytes


def fixed_keys(argv: list[str]) -> set[str]:
    """The keys a command line sets to a single value (not `a,b`, `range(...)`, `choice(...)`); the last one counts."""
    parser = OverridesParser.create()
    sweeps: dict[str, bool] = {}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except OverrideParseException:
            continue
        sweeps[override.key_or_group] = override.is_sweep_override()
    return {key for key, sweep in sweeps.items() if not sweep}


# What a run writes before its first optimizer step (a checkpoint is never among them).
BEFORE_FIRST_STEP = ("config_resolved.yaml", "manifest.json", "tensorboard", "csv", "wandb", "samples")


def discard_refused_run(written: set[str]) -> None:
    """Remove the run dir Hydra made for a run refused before it trained: its own `.hydra/` and log, and `written`.

    Only a dir this process made holding nothing else; a run resuming elsewhere keeps that run's dir, and nothing
    outside Hydra's dir for this run is touched.
    """
    if HydraConfig.initialized():
        ours = {".hydra", f"{HydraConfig.get().job.name}.log", *written}
        discard_unused_run_dir(Path(HydraConfig.get().runtime.output_dir), frozenset(ours))
