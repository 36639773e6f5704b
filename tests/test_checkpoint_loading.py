"""Checkpoints are read as data only: a pickle payload never runs, a bad file is one line, at every entry point."""

import io
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.run.checkpoints import AtomicCheckpointIO, read_checkpoint
from lyric_lm.songs.export import export_checkpoint
from lyric_lm.songs.loading import global_step_of, load_checkpoint, load_for_generation
from tests.conftest import ROOT, TINY, compose_train, run_env, write_corpus

NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # torch's switch back to full unpickling


class Payload:
    """Unpickled, it would call open(marker, "w"): the file appearing means the checkpoint's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(tmp_path, last_ckpt):
    """A real checkpoint of the tiny run with one extra entry whose unpickling creates `<tmp_path>/ran`."""
    checkpoint = torch.load(last_ckpt, weights_only=True)
    checkpoint["x"] = Payload(tmp_path / "ran")
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    return path, tmp_path / "ran"


def test_the_payload_would_run_if_unpickled(tiny_run, tmp_path):
    path, marker = malicious_checkpoint(tmp_path, tiny_run / "checkpoints" / "last.ckpt")
    torch.load(path, weights_only=False)  # what the other tests guard against, done here on purpose
    assert marker.exists()


@pytest.mark.parametrize("force_no_weights_only", [False, True])
def test_a_pickle_payload_is_refused_and_never_runs(tiny_run, tmp_path, monkeypatch, force_no_weights_only):
    if force_no_weights_only:
        monkeypatch.setenv(NO_WEIGHTS_ONLY, "1")
    path, marker = malicious_checkpoint(tmp_path, tiny_run / "checkpoints" / "last.ckpt")
    refused = f"^checkpoint {path} holds Python objects other than tensors and plain values, and was refused"
    for load in (
        load_checkpoint,  # generate.py, export.py, evaluate.py
        global_step_of,  # export.py's model card, evaluate.py's step
        AtomicCheckpointIO().load_checkpoint,  # resuming training
        lambda p: load_for_generation(ckpt_path=str(p)),
        lambda p: export_checkpoint(p, tmp_path / "hf"),
    ):
        with pytest.raises(LyricLMError, match=refused):
            load(path)
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()


def bad_files(tmp_path, last_ckpt):
    """{kind: path} of files a user may pass as a checkpoint by mistake."""
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    cut = tmp_path / "cut.ckpt"
    data = last_ckpt.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    other_zip = tmp_path / "archive.ckpt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("songs/a.txt", "la la la")
    # A complete torch file, but not a Lightning checkpoint: a bare state dict.
    bare = tmp_path / "weights.ckpt"
    torch.save(torch.load(last_ckpt, weights_only=True)["state_dict"], bare)
    # A Lightning checkpoint archive whose pickle was damaged: the zip directory is intact.
    damaged = tmp_path / "damaged.ckpt"
    buffer = io.BytesIO()
    with zipfile.ZipFile(last_ckpt) as src, zipfile.ZipFile(buffer, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            dst.writestr(item, body[: len(body) // 2] if item.filename.endswith("data.pkl") else body)
    damaged.write_bytes(buffer.getvalue())
    return {"text": text, "cut": cut, "zip": other_zip, "bare": bare, "damaged": damaged}


def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_it(tiny_run, tmp_path):
    for kind, path in bad_files(tmp_path, tiny_run / "checkpoints" / "last.ckpt").items():
        for load in (load_checkpoint, AtomicCheckpointIO().load_checkpoint, read_checkpoint):
            with pytest.raises(LyricLMError, match=f"^checkpoint {path} ") as err:
                load(path)
            assert "\n" not in str(err.value), kind
            assert "point ckpt_path at another checkpoint" in str(err.value), kind


def test_our_checkpoints_load_as_data_only(tiny_run):
    checkpoint = read_checkpoint(tiny_run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3
    assert checkpoint["manifest"]["config_hash"]  # the run manifest
    rng = next(state for key, state in checkpoint["callbacks"].items() if key.startswith("ExactResume"))["rng"]
    assert {"torch", "numpy", "python"} <= rng.keys()


def test_a_lora_checkpoint_loads_as_data_only(corpus, tmp_path):
    run = tmp_path / "run"
    train(compose_train(*TINY, "model.lora.r=4", f"data.path={corpus}", "trainer.max_steps=2", output_dir=run))
    last = run / "checkpoints" / "last.ckpt"
    assert hasattr(load_checkpoint(last).model, "peft_config")  # the adapters rebuilt, weights_only=True
    assert AtomicCheckpointIO().load_checkpoint(last)["global_step"] == 2


def run_entry_point(script: str, *args: str, cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(cmd, cwd=cwd, env={**run_env(), **env}, capture_output=True, text=True, timeout=600)


def resume_args(tmp_path) -> list[str]:
    corpus = write_corpus(tmp_path / "songs.txt")
    return [*TINY, f"data.path={corpus}", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'resumed'}"]


ENTRY_POINTS = {
    "generate.py": lambda tmp_path: [],
    "export.py": lambda tmp_path: [f"output_dir={tmp_path / 'hf'}"],
    "evaluate.py": lambda tmp_path: [f"output_dir={tmp_path / 'eval'}"],
    "train.py": resume_args,  # resuming from the checkpoint
}


@pytest.mark.slow
@pytest.mark.parametrize("force_no_weights_only", [False, True])
@pytest.mark.parametrize("script", list(ENTRY_POINTS))
def test_cli_refuses_a_malicious_checkpoint_in_one_line(tiny_run, tmp_path, script, force_no_weights_only):
    path, marker = malicious_checkpoint(tmp_path, tiny_run / "checkpoints" / "last.ckpt")
    env = {NO_WEIGHTS_ONLY: "1"} if force_no_weights_only else {}
    proc = run_entry_point(script, f"ckpt_path={path}", *ENTRY_POINTS[script](tmp_path), cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint {path} holds Python objects")
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("script", "kind"), [("generate.py", "text"), ("export.py", "cut"), ("evaluate.py", "zip")])
def test_cli_bad_checkpoint_file_is_one_line(tiny_run, tmp_path, script, kind):
    files = bad_files(tmp_path, tiny_run / "checkpoints" / "last.ckpt")
    path = files[kind]
    proc = run_entry_point(script, f"ckpt_path={path}", *ENTRY_POINTS[script](tmp_path), cwd=tmp_path, env={})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().startswith(f"error: checkpoint {path} ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in files.values())  # nothing written
