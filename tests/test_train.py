"""End to end: pipeline.train on composed configs, and train.py through the command line."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm.module import LyricLM
from lyric_lm.pipeline import train
from tests.conftest import TINY, compose_train, run_cli


def scalars(run_dir, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_fast_dev_run_gives_finite_loss_and_writes_no_checkpoint_or_logs(corpus, tmp_path):
    cfg = compose_train(*TINY, f"data.path={corpus}", "debug=fast_dev_run", output_dir=tmp_path / "run")
    val_loss = train(cfg)
    assert val_loss is not None
    assert math.isfinite(val_loss)
    written = {p.relative_to(tmp_path / "run").parts[0] for p in (tmp_path / "run").rglob("*")}
    assert not written & {"checkpoints", "tensorboard", "hf_model", "manifest.json"}, written


def optimizer_steps(corpus, run_dir, accumulate: int) -> int:
    cfg = compose_train(
        *TINY,
        f"data.path={corpus}",
        f"trainer.accumulate_grad_batches={accumulate}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=16",
        "data.batch_size=2",
        "optim.warmup_ratio=0.25",
        "trainer.log_every_n_steps=1",
        output_dir=run_dir,
    )
    best = train(cfg)
    assert best is not None
    assert math.isfinite(best)
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]


def test_accumulation_divides_optimizer_steps_and_schedule_follows(corpus, tmp_path):
    assert optimizer_steps(corpus, tmp_path / "a1", 1) == 16
    assert optimizer_steps(corpus, tmp_path / "a8", 8) == math.ceil(16 / 8)

    lr = scalars(tmp_path / "a1", "train/lr/decay")  # one value per optimizer step
    assert len(lr) == 16
    peak = max(lr)
    assert lr[0] == 0.0
    assert lr[4] == pytest.approx(peak)
    assert all(a > b for a, b in zip(lr[4:], lr[5:], strict=False))  # then strictly down ...
    assert lr[-1] == pytest.approx(peak / 12)  # ... linearly, one step short of 0 at the last step


def test_last_checkpoint_holds_the_final_step_and_loads_alone(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = compose_train(
        *TINY, f"data.path={corpus}", "trainer.max_steps=5", "trainer.val_check_interval=2", output_dir=run
    )
    train(cfg)
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5  # not the step of the last validation
    assert isinstance(LyricLM.load_from_checkpoint(last), LyricLM)
    assert (run / "config_resolved.yaml").is_file()


@pytest.mark.slow
def test_cli_run_writes_checkpoints_and_tensorboard(corpus, tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "experiment=quickstart",
        *TINY,
        f"data.path={corpus}",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("step") for p in (run / "checkpoints").iterdir())  # the best by val/loss
    assert (run / ".hydra" / "config.yaml").is_file()
    assert len(scalars(run, "val/loss")) == 2
    assert len(scalars(run, "val/ppl")) == 2
    assert scalars(run, "train/loss")
    assert scalars(run, "train/lr/decay")


@pytest.mark.slow
def test_cli_multirun_gives_each_job_its_own_run_dir(corpus, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "experiment=quickstart",
        *TINY,
        f"data.path={corpus}",
        "optim.lr=1e-4,3e-4",
        "trainer.max_steps=3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert list((sweep / job / "tensorboard").rglob("events.out.tfevents.*"))  # under the job's label
    lrs = {OmegaConf.load(sweep / j / "config_resolved.yaml").optim.lr for j in "01"}
    assert lrs == {1e-4, 3e-4}


@pytest.mark.slow
def test_unreachable_hub_is_one_line_and_no_traceback_and_leaves_no_run_dir(tmp_path):
    proc = run_cli("data.batch_size=1", cwd=tmp_path)  # the default run dir, outputs/<date>/<time>
    assert proc.returncode == 2
    assert not (tmp_path / "outputs").exists()
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "model 'gpt2' cannot be downloaded" in errors[0]
    assert "model=tiny" in errors[0]
