"""Sweeps: each job's result.json, the sweep's summary.csv/summary.md, Optuna search, TensorBoard hparams view."""

import csv
import json

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from lyric_lm.pipeline import train
from lyric_lm.run.sweep import summarize, write_result
from tests.conftest import TINY, compose_train, run_cli

# One short epoch per job, so each job validates (and has a best val/loss) after a few steps.
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_summary_marks_the_best_job_and_counts_a_job_without_result_as_failed(tmp_path):
    write_result(tmp_path / "0", "completed", val_loss=3.0, val_ppl=20.1, steps=10, wall_s=5.0, tokens_per_s=900.0)
    write_result(tmp_path / "1", "completed", val_loss=2.5, val_ppl=12.2, steps=10, wall_s=6.0, tokens_per_s=800.0)
    write_result(tmp_path / "2", "failed", error="data.block_size=4096 exceeds the model's context")
    (tmp_path / "10" / ".hydra").mkdir(parents=True)  # a job killed before it wrote its result
    OmegaConf.save(OmegaConf.create(["optim.lr=1.0"]), tmp_path / "10" / ".hydra" / "overrides.yaml")

    rows = summarize(tmp_path)

    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]  # numeric job order, not 0, 1, 10, 2
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "failed"]
    table = read_csv(tmp_path / "summary.csv")
    assert [r["best"] for r in table] == ["False", "True", "False", "False"]
    assert table[3]["overrides"] == "optim.lr=1.0"
    md = (tmp_path / "summary.md").read_text()
    assert "4 jobs, 2 completed, 2 failed" in md
    assert "| 1 | **best** completed |" in md
    assert "exceeds the model's context" in md


def test_result_and_tensorboard_hparams_hold_the_final_metrics(corpus, tmp_path):
    run = tmp_path / "run"
    best = train(compose_train(*TINY, f"data.path={corpus}", *SHORT, output_dir=run))

    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed"
    assert result["val_loss"] == pytest.approx(best)
    assert result["steps"] == 4
    assert result["tokens_per_s"] > 0

    # TensorBoard's HPARAMS tab: the run's hyperparameters with its final metrics as columns.
    experiments = [
        plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).experiment
        for events_file in (run / "tensorboard").glob("events.out.tfevents.*")  # one run, however many files
        for event in EventFileLoader(str(events_file)).Load()
        for v in event.summary.value
        if v.tag == "_hparams_/experiment"
    ]
    assert len(experiments) == 1
    # Its metric columns are the val/loss and val/ppl curves' last values, beside a curated set of settings.
    assert {m.name.tag for m in experiments[0].metric_infos} == {"val/loss", "val/ppl"}
    names = {h.name for h in experiments[0].hparam_infos}
    assert {"model", "lr", "batch_size", "accumulate_grad_batches", "effective_batch", "block_size", "data"} <= names
    assert len(names) < 20
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("best")]  # no group of single dots
    assert [e.value for e in events.Scalars("val/loss")] == [pytest.approx(best)]  # no stray point at step 0


@pytest.mark.slow
def test_basic_sweep_records_a_broken_job_and_finishes_the_others(corpus, tmp_path):
    sweep = tmp_path / "sweep"
    # data.block_size=512 exceeds the tiny model's 256 positions: those two jobs fail, the other two train.
    proc = run_cli(
        "-m", *TINY, f"data.path={corpus}", *SHORT, "optim.lr=1e-3,3e-3", "data.block_size=16,512",
        "logger=[tensorboard,csv]", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1  # the sweep went to the end, then reports its failures
    assert "Traceback" not in proc.stderr
    assert "error: 2 of 4 jobs failed" in proc.stderr
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4
    for r in rows:  # each job's own fate: the broken value fails, the rest complete
        assert r["status"] == ("failed" if "data.block_size=512" in r["overrides"] else "completed")
    assert all("exceeds the model's context" in r["error"] for r in rows if r["status"] == "failed")
    assert sum(r["best"] == "True" for r in rows) == 1
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert "**best**" in (sweep / "summary.md").read_text()
    # TensorBoard and CSV name each job by what the sweep varies.
    label = next(p.name for p in (sweep / "0" / "tensorboard").iterdir())
    assert set(label.split(",")) == {"lr=0.001", "block_size=16"}
    assert list((sweep / "0" / "tensorboard" / label).glob("events.out.tfevents.*"))
    assert (sweep / "0" / "csv" / label / "metrics.csv").is_file()


@pytest.mark.slow
def test_optuna_search_runs_its_trials_and_summarises_them(corpus, tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_cli(
        "-m", "hparams_search=lyrics_optuna", "experiment=quickstart", "hydra.sweeper.n_trials=4",
        *[o for o in TINY if not o.startswith("data.")],  # the search sets data.batch_size and data.block_size
        f"data.path={corpus}", *SHORT, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4
    assert all(r["status"] == "completed" for r in rows)
    assert len({r["overrides"] for r in rows}) == 4  # the sampler tried four different settings
    best = OmegaConf.load(sweep / "optimization_results.yaml").best_value
    assert min(float(r["val_loss"]) for r in rows) == pytest.approx(best)
    assert "**best**" in (sweep / "summary.md").read_text()
