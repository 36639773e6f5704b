"""Bad settings are refused before any heavy work: one line per problem, all at once, nothing written."""

import subprocess
import sys

import pytest

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import check_run
from tests.conftest import ROOT, TINY, compose_train, run_env

# (override, words the one-line message must contain)
BAD = [
    ("optim.lr=0", "optim.lr=0"),
    ("optim.lr=-1e-4", "optim.lr=-0.0001"),
    ("optim.warmup_steps=50", "optim.warmup_steps=50 is not shorter than the run"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio=1.5"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be >= 1"),
    ("data.block_size=4096", "exceeds the model's context of 256 tokens"),
    ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
    ("data.val_fraction=1.2", "data.val_fraction=1.2"),
    ("data.val_fraction=0", "data.val_fraction=0"),
    ("trainer.precision=17-mixed", "trainer.precision=17-mixed is not a known precision"),
    ("data.path=/no/such/lyrics.txt", "data.path=/no/such/lyrics.txt does not exist"),
    ("model.name_or_path=/no/such/model", "model.name_or_path=/no/such/model is not a directory"),
    ("ckpt_path=/no/such/last.ckpt", "checkpoint /no/such/last.ckpt does not exist"),
    ("resume=always", "resume=always is not an option"),
    ("run_dir=/tmp", "add resume=auto"),
    ("trainer.max_steps=0", "trainer.max_steps=0"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("optim.lr=fast", "optim.lr=fast must be a number"),
    ("model.config.n_head=3", "must be a multiple of model.config.n_head=3"),
    ("data.packing=maybe", "data.packing=maybe must be true or false"),
    ("data.max_songs=-1", "data.max_songs=-1 must be >= 1 (or null: no limit)"),
    ("model.lora.r=-1", "model.lora.r=-1 must be >= 0"),
    ("data.test_fraction=1", "data.test_fraction=1 must be in [0, 1)"),
    ("callbacks.checkpoint.monitor=val/nope", "callbacks.checkpoint.monitor=val/nope is not a metric the run logs"),
]


def config_problems(cfg) -> list[str]:
    """What train.py refuses `cfg` for before building anything: the config check and the resume lookup together."""
    try:
        check_run(cfg)
    except LyricLMError as err:
        return str(err).split("\nerror: ")
    return []


@pytest.mark.parametrize(("override", "expected"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_setting_is_named_on_one_line(override, expected, tmp_path):
    cfg = compose_train(*TINY, "trainer.max_steps=20", override, output_dir=tmp_path / "run")
    problems = config_problems(cfg)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert "\n" not in problems[0]


def test_the_shipped_configs_have_no_problems(tmp_path):
    assert config_problems(compose_train(output_dir=tmp_path)) == []
    assert config_problems(compose_train("experiment=quickstart", output_dir=tmp_path)) == []


def test_all_problems_are_listed_at_once(tmp_path):
    cfg = compose_train(*TINY, "optim.lr=0", "data.batch_size=0", "trainer.precision=8", output_dir=tmp_path / "r")
    with pytest.raises(LyricLMError) as err:
        check_run(cfg)
    lines = f"error: {err.value}".splitlines()
    assert len(lines) == 3
    assert all(line.startswith("error: ") for line in lines)


def test_a_truncated_checkpoint_is_refused_by_name(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    problems = config_problems(compose_train(*TINY, f"ckpt_path={bad}", output_dir=tmp_path / "run"))
    assert len(problems) == 1
    assert problems[0].startswith(f"checkpoint {bad} is truncated or not a PyTorch checkpoint; ")


def test_a_new_run_never_writes_into_another_runs_checkpoints(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    problems = config_problems(compose_train(*TINY, output_dir=tmp_path / "run"))
    assert len(problems) == 1
    assert "already holds another run's checkpoints" in problems[0]
    assert f"resume=auto run_dir={tmp_path / 'run'}" in problems[0]


@pytest.mark.slow
def test_cli_refuses_bad_settings_in_one_line_each_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *TINY,
            "optim.lr=-1",
            "data.block_size=999",
            "data.path=/no/such/dir",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr
    assert not run.exists()  # not even Hydra's .hydra/ and train.log
