"""Sweep bookkeeping: each job's `result.json`; the sweep's `summary.csv` and `summary.md` (a Hydra callback)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lyric_lm.errors import LyricLMError, in_multirun

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
COLUMNS = ("job", "status", "overrides", "val_loss", "val_ppl", "steps", "wall_s", "tokens_per_s", "error")


class JobStats(L.Callback):
    """Counts the training tokens and times the fit loop, for the job's tokens/s (summed over all devices)."""

    def __init__(self):
        self.tokens = 0
        self.train_s = 0.0
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.tokens += batch["input_ids"].numel() * trainer.world_size  # (B, T) per device, same B on every device

    def on_train_end(self, trainer, pl_module) -> None:
        if self._start is not None:
            self.train_s = time.perf_counter() - self._start

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.train_s if self.train_s > 0 else None


def job_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job (what a sweep varied), or [] outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def write_result(run_dir: Path, status: str, **fields: Any) -> Path:
    """Write `<run_dir>/result.json`: status ("completed" or "failed"), metrics, steps, timing and overrides."""
    result = {"status": status, "overrides": job_overrides(), **fields}
    for key, value in result.items():  # JSON has no NaN or Infinity
        if isinstance(value, float) and not math.isfinite(value):
            result[key] = None
    path = Path(run_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def error_line(err: BaseException) -> str:
    """One line for a summary table: the message of a LyricLMError, `Type: message` for anything else."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, LyricLMError) else f"{type(err).__name__}: {text}".rstrip(": ")


def read_job(job_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    """One row of the summary; a job dir without result.json (killed, crashed before training) is a failure."""
    row: dict[str, Any] = {"job": job_dir.relative_to(sweep_dir).as_posix()}
    result_path = job_dir / RESULT_FILE
    if result_path.is_file():
        row.update(json.loads(result_path.read_text(encoding="utf-8")))
    else:
        overrides = job_dir / ".hydra" / "overrides.yaml"
        row["status"] = "failed"
        row["overrides"] = list(OmegaConf.load(overrides)) if overrides.is_file() else []
        row["error"] = f"no {RESULT_FILE}: the job ended before writing its result (see its train.log)"
    row["overrides"] = " ".join(row.get("overrides") or [])
    return {key: row.get(key) for key in COLUMNS}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job dir under the sweep dir (each has Hydra's `.hydra/` or a result.json), in job order."""
    found = {p.parent for p in sweep_dir.rglob(RESULT_FILE)}
    found |= {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    found.discard(sweep_dir)

    def order(path: Path):
        rel = path.relative_to(sweep_dir).parts
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel]

    return sorted(found, key=order)


def summarize(sweep_dir: Path, metric: str = "val_loss") -> list[dict[str, Any]]:
    """Write summary.csv and summary.md in `sweep_dir` from its jobs' result.json; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = [read_job(d, sweep_dir) for d in job_dirs(sweep_dir)]
    done = [r for r in rows if r["status"] == "completed" and r[metric] is not None]
    best = min(done, key=lambda r: r[metric]) if done else None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, "best"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "best": row is best})
    write_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    write_atomic(sweep_dir / "summary.md", markdown_table(rows, best, sweep_dir))
    return rows


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: jobs running at once (submitit) never leave a torn summary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], best: dict[str, Any] | None, sweep_dir: Path) -> str:
    """The summary as Markdown: overrides shared by every job once above the table, each job's own in it."""
    failed = sum(r["status"] != "completed" for r in rows)
    per_job = [(r["overrides"] or "").split() for r in rows]
    common = [o for o in per_job[0] if all(o in job for job in per_job)] if per_job else []
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        f"{len(rows)} jobs, {len(rows) - failed} completed, {failed} failed. "
        + (f"Best: job {best['job']} (val/loss {best['val_loss']:.4f}), marked **best**." if best else "No best job."),
        "",
        f"Overrides common to all jobs: `{' '.join(common)}`" if common else "No override is common to all jobs.",
        "",
        "| job | status | overrides | best val/loss | val/ppl | steps | wall s | tokens/s | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r, overrides in zip(rows, per_job, strict=True):
        own = " ".join(o for o in overrides if o not in common)
        cells = [
            r["job"],
            f"**best** {r['status']}" if r is best else r["status"],
            f"`{own}`" if own else "",
            _fmt(r["val_loss"], 4),
            _fmt(r["val_ppl"], 2),
            _fmt(r["steps"], 0),
            _fmt(r["wall_s"], 1),
            _fmt(r["tokens_per_s"], 0),
            _fmt(r["error"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback: at the end of any multirun, summarise its jobs; exit non-zero if any of them failed.

    Registered in conf/hydra/default.yaml; reads the jobs' files, so it works with any launcher (basic, submitit).
    """

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        # Kept up to date after every job: a sweeper that stops early (Optuna when no trial completed, a
        # cancelled cluster sweep) still leaves a summary of the jobs so far.
        if config.hydra.mode == RunMode.MULTIRUN and Path(config.hydra.sweep.dir).is_dir():
            summarize(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize(sweep_dir)
        failed = [r for r in rows if r["status"] != "completed"]
        log.info(f"Sweep summary: {sweep_dir / 'summary.md'}")
        if failed:
            jobs = ", ".join(f"job {r['job']} ({r['error']})" for r in failed)
            summary = sweep_dir / "summary.md"
            print(f"error: {len(failed)} of {len(rows)} jobs failed: {jobs}; see {summary}", file=sys.stderr)
            sys.exit(1)


def recording_failure(cfg: DictConfig, train_fn) -> Any:
    """Call `train_fn(cfg)`; if it raises inside a sweep, write a "failed" result.json in the job's dir first (for
    the sweep summary), then re-raise. A single run writes nothing: a run refused for bad settings leaves no trace."""
    started = time.perf_counter()
    try:
        return train_fn(cfg)
    except Exception as err:
        if in_multirun() and getattr(rank_zero_only, "rank", 0) == 0:
            write_result(
                Path(cfg.paths.output_dir), "failed", error=error_line(err), wall_s=time.perf_counter() - started
            )
        raise
