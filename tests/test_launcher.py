"""SLURM through hydra-submitit-launcher: the launcher config composes and builds its sbatch script (no cluster
needed), and a sweep runs through submitit's local executor."""

import csv
import subprocess
import sys

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, TINY, run_env

MULTI_NODE = [
    "hydra/launcher=slurm",
    "trainer=ddp",
    "trainer.num_nodes=2",
    "trainer.devices=4",
    "hydra.launcher.nodes=2",
    "hydra.launcher.tasks_per_node=4",
    "hydra.launcher.gpus_per_node=4",
    "hydra.launcher.partition=gpu",
]


def sbatch_script(params: dict, folder, monkeypatch) -> str:
    """The sbatch file the launcher would submit, built the way SlurmLauncher.launch builds its executor."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if srun were here
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=0)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"submitit_folder", "max_num_timeout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skip})
    return executor._executor._make_submission_file_text("python train.py", "test")


def test_slurm_launcher_config_instantiates_and_asks_for_nodes_tasks_and_gpus(tmp_path, monkeypatch):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=MULTI_NODE, return_hydra_config=True)
    assert cfg.trainer.num_nodes == cfg.hydra.launcher.nodes == 2
    assert cfg.trainer.devices == cfg.hydra.launcher.tasks_per_node == 4  # one Lightning process per SLURM task

    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    del params["_target_"]
    params["name"] = "train"  # ${hydra.job.name} and ${hydra.sweep.dir}: filled in by Hydra at run time
    params["submitit_folder"] = str(tmp_path / ".submitit" / "%j")
    launcher = instantiate({"_target_": cfg.hydra.launcher._target_, **params})
    assert type(launcher).__name__ == "SlurmLauncher"  # (Hydra's plugin discovery imports its own copy)

    script = sbatch_script(launcher.params, tmp_path, monkeypatch)
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=720"):
        assert f"#SBATCH {line}" in script


@pytest.mark.slow
def test_cfg_hydra_composes_on_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "hydra/launcher=slurm", "--cfg", "hydra"],
        cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout


@pytest.mark.slow
def test_two_job_sweep_through_the_submitit_local_executor(corpus, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", *TINY,
            f"data.path={corpus}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "optim.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}",
        ],
        # submitit's job processes import lyric_lm like an installed package would be (pip install -e .)
        cwd=tmp_path, env={**run_env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((sweep / ".submitit").iterdir())  # the jobs went through submitit
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert sorted(o for r in rows for o in r["overrides"].split() if o.startswith("optim.lr=")) == [
        "optim.lr=0.001",
        "optim.lr=0.003",
    ]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
