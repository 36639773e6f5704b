"""Files the project writes: the user's umask, whole or not at all, a full or read-only disk as one line."""

import errno
import os
import stat

import pytest
import torch

from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.run.checkpoints import AtomicCheckpointIO
from lyric_lm.songs.export import export_checkpoint
from lyric_lm.songs.sampling import write_jsonl
from tests.conftest import TINY, compose_train


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_checkpoints_jsonl_and_exports_get_the_users_umask(tiny_run, tmp_path, umask):
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "ckpts" / "last.ckpt")
    write_jsonl([{"text": "la"}], tmp_path / "songs" / "songs.jsonl")
    out = export_checkpoint(tiny_run / "checkpoints" / "last.ckpt", tmp_path / "hf")
    # What plain open() and mkdir() give: 0o644 / 0o755 under umask 022, 0o640 / 0o750 under 027.
    for path in (tmp_path / "ckpts" / "last.ckpt", tmp_path / "songs" / "songs.jsonl", out / "model.safetensors"):
        assert mode(path) == 0o666 & ~umask, path
    for path in (tmp_path / "ckpts", out):
        assert mode(path) == 0o777 & ~umask, path


def failing(err_no: int):
    def fail(*args, **kwargs):
        raise OSError(err_no, os.strerror(err_no))

    return fail


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("where", ["torch.save", "os.fsync"])
def test_a_failed_checkpoint_save_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, where, err_no):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {}, "hyper_parameters": {}}, path)
    if where == "torch.save":
        monkeypatch.setattr(torch, "save", failing(err_no))
    else:  # the data is written, the disk only fails when it must hold it
        monkeypatch.setattr(os, "fsync", failing(err_no))
    with pytest.raises(LyricLMError, match=rf"^cannot write to {path.parent}: .+; free space or make it writable") as e:
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert "\n" not in str(e.value)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert os.listdir(path.parent) == ["last.ckpt"]  # no temporary file left


def test_a_full_disk_during_training_stops_with_one_line(corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    save = torch.save
    saves = []

    def full_after_first(obj, f, *args, **kwargs):
        saves.append(obj["global_step"])
        if len(saves) > 1:
            f.write(b"PK\x03\x04 part of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_after_first)
    cfg = compose_train(
        *TINY,
        f"data.path={corpus}",
        "trainer.max_steps=6",
        "trainer.num_sanity_val_steps=0",
        "callbacks.checkpoint.every_n_train_steps=2",
        output_dir=run,
    )
    with pytest.raises(LyricLMError, match=f"^cannot write to {run / 'checkpoints'}: the disk is full; free space"):
        train(cfg)
    monkeypatch.undo()
    assert os.listdir(run / "checkpoints") == ["last.ckpt"]
    assert AtomicCheckpointIO().load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == saves[0] == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_a_read_only_checkpoint_folder_is_one_line(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir(mode=0o555)
    with pytest.raises(LyricLMError, match=f"^cannot write to {folder}: permission denied"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, folder / "last.ckpt")


def test_a_failed_jsonl_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "songs.jsonl"
    write_jsonl([{"text": "first"}], path)
    monkeypatch.setattr(os, "fsync", failing(errno.ENOSPC))
    with pytest.raises(LyricLMError, match=f"^cannot write to {tmp_path}: the disk is full"):
        write_jsonl([{"text": "second"}], path)
    monkeypatch.undo()
    assert path.read_text() == '{"text": "first"}\n'
    assert os.listdir(tmp_path) == ["songs.jsonl"]
