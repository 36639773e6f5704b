"""Every logger preset works end to end, alone or several at once, and records the curated hyperparameters."""

import csv

import pytest

from lyric_lm.loggers import review_hparams
from lyric_lm.pipeline import train
from tests.conftest import TINY, compose_train

SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "callbacks.samples=null"]


def test_the_reviewed_hyperparameters_are_a_readable_dozen(tmp_path):
    cfg = compose_train(*TINY, "trainer.accumulate_grad_batches=8", output_dir=tmp_path)
    hparams = review_hparams(cfg, world_size=2)
    assert hparams["effective_batch"] == 4 * 8 * 2  # batch x accumulation x processes
    assert hparams["model"] == "gpt2 (from scratch)"
    assert hparams["data"] == "builtin sample"
    assert len(hparams) <= 14
    assert all(isinstance(v, int | float | str | bool) for v in hparams.values())


def test_csv_and_tensorboard_together(corpus, tmp_path):
    run = tmp_path / "run"
    train(compose_train(*TINY, f"data.path={corpus}", *SHORT, "logger=[tensorboard,csv]", output_dir=run))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert any(row.get("val/loss") for row in rows)
    assert "effective_batch: 4" in (run / "csv" / "hparams.yaml").read_text()


def test_mlflow_records_params_and_final_metrics_offline(corpus, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")
    run = tmp_path / "run"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train(
        compose_train(
            *TINY, f"data.path={corpus}", *SHORT, "logger=mlflow", f"logger.mlflow.tracking_uri={store}", output_dir=run
        )
    )
    mlflow.set_tracking_uri(store)
    (found,) = mlflow.search_runs(experiment_names=["lyric_lm"], output_format="list")
    assert found.data.params["lr"] == "5e-05"
    assert found.data.params["model"] == "gpt2 (from scratch)"
    assert "val/loss" in found.data.metrics


def test_wandb_offline_writes_its_run_into_the_run_dir(corpus, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra: pip install -e '.[wandb]'")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    train(compose_train(*TINY, f"data.path={corpus}", *SHORT, "logger=wandb", output_dir=run))
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
