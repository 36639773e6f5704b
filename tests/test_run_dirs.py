"""Run dirs are never shared or removed unless this run made them; typos and impossible settings are refused early."""

import multiprocessing
import signal

import pytest
from hydra import compose, initialize_config_dir

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.run.dirs import created_here, discard_unused_run_dir, new_dir
from lyric_lm.validation import added_key_problems
from tests.conftest import CONF, TINY, compose_train, run_cli

GROUPS = {"model", "data", "optim", "trainer", "callbacks", "logger", "paths", "experiment", "debug", "hparams_search"}


def _claim(base: str, queue) -> None:
    queue.put(new_dir(base))


def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    base = str(tmp_path / "outputs" / "2026-01-01" / "10-00-00")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(base, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    dirs = sorted(queue.get(timeout=5) for _ in procs)
    assert dirs == [base, f"{base}_2", f"{base}_3", f"{base}_4"]


def test_the_claim_is_stable_within_a_run_and_the_default_run_dir_uses_it(tmp_path):
    base = str(tmp_path / "10-00-00")
    assert new_dir(base) == new_dir(base) == base  # Hydra resolves hydra.run.dir several times in one run
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    assert cfg.hydra.run._get_node("dir")._value().startswith("${lyric:new_dir,outputs/")


def test_a_refused_run_removes_only_a_dir_it_made(tmp_path):
    older = tmp_path / "older"
    (older / ".hydra").mkdir(parents=True)
    (older / "train.log").write_text("an earlier run's log\n")
    assert not discard_unused_run_dir(older)  # not made by this process: kept
    assert (older / "train.log").is_file()

    ours = tmp_path / "new" / "10-00-00"
    new_dir(str(ours))
    assert created_here(ours)
    assert created_here(ours.parent)
    (ours / "notes.txt").write_text("something a user put there")
    assert not discard_unused_run_dir(ours)  # holds more than Hydra's files: kept
    (ours / "notes.txt").unlink()
    (ours / ".hydra").mkdir()
    assert discard_unused_run_dir(ours)
    assert not (tmp_path / "new").exists()  # its date folder went with it, made for it alone


@pytest.mark.slow
def test_a_refused_setting_keeps_an_older_dir_named_by_hydra_run_dir(tmp_path):
    older = tmp_path / "older"
    (older / ".hydra").mkdir(parents=True)
    (older / "train.log").write_text("an earlier run's log\n")
    proc = run_cli("model=tiny", "optim.lr=0", f"hydra.run.dir={older}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "an earlier run's log" in (older / "train.log").read_text()


OVERRIDES = [
    (
        "+optim.learning_rate=1",
        "optim.learning_rate is not a setting of lyric_lm (added with +); did you mean optim.lr?",
    ),
    ("+data.blok_size=64", "did you mean data.block_size?"),
    ("+model.lora.rank=8", "did you mean model.lora.r?"),
    ("+lr=1e-4", "lr is not a setting of lyric_lm (added with +); did you mean optim.lr?"),
    ("+speed.fused_adam=true", "did you mean speed.fused_adamw?"),
]


@pytest.mark.parametrize(("override", "expected"), OVERRIDES, ids=[o[0] for o in OVERRIDES])
def test_a_key_added_to_our_groups_is_a_typo_named_with_the_closest_key(override, expected, tmp_path):
    cfg = compose_train(*TINY, override, output_dir=tmp_path)
    problems = added_key_problems(cfg, [*TINY, override], GROUPS)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_keys_added_where_they_are_welcome_pass(tmp_path):
    welcome = ["+model.config.n_inner=64", "+trainer.max_time=00:00:05:00", "+callbacks.extra=null"]
    cfg = compose_train(*TINY, *welcome, output_dir=tmp_path)
    assert added_key_problems(cfg, [*TINY, *welcome], GROUPS) == []


@pytest.mark.slow
def test_typos_and_a_missing_gpu_stop_the_command_line_with_one_line_each_and_no_run_dir(tmp_path):
    proc = run_cli("model=tiny", "+optim.learning_rate=1", "trainer.accelerator=gpu", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert "did you mean optim.lr?" in errors[0]
    assert "trainer.accelerator=gpu but torch sees no CUDA GPU" in errors[1]
    assert not (tmp_path / "outputs").exists()


def test_val_check_interval_beyond_an_epoch_is_one_line(corpus, tmp_path):
    # 30 songs, 27 for training, in blocks of 32 tokens, 4 per batch: 19 batches an epoch.
    cfg = compose_train(*TINY, f"data.path={corpus}", "trainer.val_check_interval=500", output_dir=tmp_path / "r")
    with pytest.raises(LyricLMError, match=r"trainer.val_check_interval=500 is more batches than an epoch has \(19\)"):
        train(cfg)


def test_the_exit_code_of_a_signal_stop_is_what_a_shell_reports():
    from lyric_lm.errors import RunStopped

    assert RunStopped("stopped", signal.SIGTERM).exit_code == 143
    assert RunStopped("stopped", signal.SIGINT).exit_code == 130


def test_an_unwritable_run_dir_is_one_line_before_hydra_starts(tmp_path, monkeypatch):
    from lyric_lm.run import dirs as run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_dir.os, "access", lambda path, mode: False)  # a read-only file system, even for root
    problem = run_dir.prepare_run_dir(["model=tiny"])
    assert problem.startswith(f"the run dir {tmp_path / 'outputs'} cannot be made: {tmp_path} cannot be written")
    assert run_dir.prepare_run_dir(["model=tiny", "--cfg", "job"]) is None  # printing the config writes nothing


@pytest.mark.slow
def test_a_run_dir_under_a_file_stops_the_command_line_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    proc = run_cli("model=tiny", f"hydra.run.dir={tmp_path / 'notes.txt' / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    notes = tmp_path / "notes.txt"
    assert proc.stderr.strip().splitlines() == [
        f"error: the run dir {notes / 'run'} cannot be made: {notes} is not a folder; "
        "start from a folder you can write to, or set hydra.run.dir=<a writable dir>"
    ]


@pytest.mark.parametrize(
    ("override", "expected"),
    [("trainer.devices=0", "`Trainer(devices=0)`"), ("trainer.strategy=bogus", "invalid strategy name")],
)
def test_trainer_settings_lightning_refuses_are_one_line(override, expected, corpus, tmp_path):
    cfg = compose_train(*TINY, f"data.path={corpus}", override, output_dir=tmp_path / "r")
    with pytest.raises(LyricLMError, match="the trainer.\\* settings were refused by Lightning: ") as err:
        train(cfg)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_lyrics_that_cannot_be_read_leave_no_run_dir(tmp_path):
    (tmp_path / "songs.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    proc = run_cli("model=tiny", "data.path=songs.txt", cwd=tmp_path)  # found in prepare_data, inside fit
    assert proc.returncode == 2
    assert "is not a text file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()
