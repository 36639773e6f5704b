"""callbacks=early_stopping: Lightning's EarlyStopping on val/loss, and a run that stops early still ends normally."""

import json

import pytest
import torch

from lyric_lm.pipeline import train
from tests.conftest import TINY, compose_train


def test_overfitting_run_stops_early_and_ends_as_any_run(corpus, tmp_path):
    # lr 3e-2 without warmup overfits 4 batches an epoch within a few epochs: val/loss turns up, and 2 validations
    # without a new best stop the run long before its 40 epochs (160 steps).
    run = tmp_path / "run"
    cfg = compose_train(
        *TINY,
        f"data.path={corpus}",
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=2",
        "callbacks.samples=null",
        "optim.lr=3e-2",
        "optim.warmup_steps=0",
        "trainer.max_epochs=40",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "export_hf=false",
        output_dir=run,
    )
    assert cfg.callbacks.early_stopping.monitor == "val/loss"
    train(cfg)

    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed"
    assert result["steps"] < 40 * 4
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == result["steps"]  # last.ckpt holds the final state
    (stopper,) = (v for k, v in last["callbacks"].items() if k.startswith("EarlyStopping"))
    assert stopper["wait_count"] == 2  # stopped by patience, not by max_epochs
    assert stopper["stopped_epoch"] > 0
    assert result["val_loss"] == pytest.approx(float(stopper["best_score"]))  # the best val/loss
