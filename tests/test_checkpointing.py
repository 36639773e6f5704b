"""Checkpoint files: atomic writes, one clear line for a bad file, saves every N steps, the non-finite guard."""

import pytest
import torch

from lyric_lm import module as module_lib
from lyric_lm.errors import LyricLMError
from lyric_lm.pipeline import train
from lyric_lm.run.checkpoints import AtomicCheckpointIO
from tests.conftest import TINY, compose_train


def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {"w": torch.ones(3)}, "hyper_parameters": {}}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like from inside

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_an_unloadable_checkpoint_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "step000010.ckpt"
    path.write_bytes(b"garbage")
    with pytest.raises(LyricLMError, match=f"checkpoint {path} is truncated"):
        AtomicCheckpointIO().load_checkpoint(path)


def run_cfg(corpus, run, *extra):
    return compose_train(
        *TINY,
        f"data.path={corpus}",
        "trainer.max_steps=7",
        "trainer.num_sanity_val_steps=0",
        "callbacks.checkpoint.every_n_train_steps=2",
        *extra,
        output_dir=run,
    )


def test_last_ckpt_is_written_every_n_steps(corpus, tmp_path, monkeypatch):
    saved = []
    original = AtomicCheckpointIO.save_checkpoint

    def record(self, checkpoint, path, storage_options=None):
        saved.append((path.name if hasattr(path, "name") else str(path).rsplit("/", 1)[-1], checkpoint["global_step"]))
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", record)
    train(run_cfg(corpus, tmp_path / "run"))
    assert [step for name, step in saved if name == "last.ckpt"][:3] == [2, 4, 6]
    assert saved[-1] == ("last.ckpt", 7)  # and the final state


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    step = module_lib.LyricLM.training_step

    def nan_at_step_5(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 5 else loss

    monkeypatch.setattr(module_lib.LyricLM, "training_step", nan_at_step_5)
    run = tmp_path / "run"
    with pytest.raises(LyricLMError, match=r"training loss became nan at step 5 .* last good checkpoint .* untouched"):
        train(run_cfg(corpus, run))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
