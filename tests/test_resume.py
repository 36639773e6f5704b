"""Exact resume: SIGKILL mid-run then resume=auto, SIGTERM's clean stop, and determinism of the first steps."""

import random
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from lyric_lm.module import LyricLM
from lyric_lm.pipeline import train
from tests.conftest import ROOT, TINY, compose_train, run_cli, run_env

# 30 songs (27 for training) in blocks of 32 tokens, 4 per batch: 19 batches an epoch; 40 steps cross two epoch ends.
STEPS = 40
RUN = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "callbacks.checkpoint.every_n_train_steps=3",
]


def step_scalars(run_dir, tag: str) -> dict[int, float]:
    """{step: value} over all event files of a run, the later file winning (a resumed run re-logs some steps)."""
    values: dict[int, float] = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = v.tensor.float_val[0] if v.HasField("tensor") else v.simple_value
    return values


def popen_train(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def whole_run(corpus, run_dir) -> None:
    train(compose_train(*RUN, f"data.path={corpus}", output_dir=run_dir))


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_losses_as_an_uninterrupted_run(corpus, tmp_path):
    whole = tmp_path / "whole"
    whole_run(corpus, whole)

    run = tmp_path / "run"
    args = [*RUN, f"data.path={corpus}"]
    proc = popen_train(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(random.uniform(0.0, 0.3))  # a random point after the first checkpoint, maybe mid-save
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed_from = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 3 <= resumed_from < STEPS

    resume = run_cli(*args, "resume=auto", f"run_dir={run}", cwd=tmp_path)
    assert resume.returncode == 0, resume.stderr[-3000:]

    expected, got = step_scalars(whole, "train/loss"), step_scalars(run, "train/loss")
    assert sorted(got) == sorted(expected) == list(range(STEPS))  # one loss per step, the curve continues
    for step in range(STEPS):
        assert got[step] == pytest.approx(expected[step], rel=1e-4), f"step {step} (resumed after {resumed_from})"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS
    val_expected, val_got = step_scalars(whole, "val/loss"), step_scalars(run, "val/loss")
    assert val_got[max(val_got)] == pytest.approx(val_expected[max(val_expected)], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_saves_a_loadable_last_ckpt_and_its_resume_command_finishes_the_run(sig, corpus, tmp_path):
    run = tmp_path / "run"
    proc = popen_train(*RUN, f"data.path={corpus}", f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, stderr[-3000:]  # 143 / 130: scripts and schedulers see the stop
    assert "Traceback" not in stderr

    last = run / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < stopped_at < STEPS
    assert isinstance(LyricLM.load_from_checkpoint(last), LyricLM)
    # Nothing ran after the stop: validations (and their sample songs) only where scheduled, every 10 batches of
    # an epoch of 19, never at the step where the signal stopped the run.
    assert set(step_scalars(run, "val/loss")) <= {10, 29}
    assert {p.name for p in (run / "samples").glob("*.md")} <= {"step_000010.md", "step_000029.md"}

    found = re.search(r"resume with:\s*\n\s*(python train\.py .*)", stderr)
    assert found, stderr[-3000:]
    command = found.group(1)
    assert "resume=auto" in command
    assert f"run_dir={run}" in command
    argv = shlex.split(command)[2:]
    done = run_cli(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == STEPS


def test_same_seed_and_config_give_the_same_first_20_losses(corpus, tmp_path):
    losses = []
    for name in ("a", "b"):
        run = tmp_path / name
        cfg = compose_train(
            *TINY,
            f"data.path={corpus}",
            "trainer.max_steps=20",
            "trainer.log_every_n_steps=1",
            "trainer.num_sanity_val_steps=0",
            output_dir=run,
        )
        train(cfg)
        losses.append(step_scalars(run, "train/loss"))
    assert len(losses[0]) == 20
    assert losses[0] == losses[1]  # bitwise on CPU
