"""Every shipped config composes, alone and as the README uses it."""

import inspect
from dataclasses import asdict

import lightning as L
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from lyric_lm.songs.sampling import Sampling
from tests.conftest import CONF, compose_train

GROUP_OPTIONS = [
    f"{group.name}={option.stem}"
    for group in sorted(CONF.iterdir())
    if group.is_dir() and group.name not in ("hydra", "sampling")  # sampling: generate/evaluate (test below)
    for option in sorted(group.glob("*.yaml"))
]


def test_every_group_has_options():
    groups = {o.split("=")[0] for o in GROUP_OPTIONS}
    assert {"model", "data", "optim", "trainer", "callbacks", "logger", "experiment", "debug"} <= groups


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_group_option_composes(override, tmp_path):
    cfg = compose_train(override, output_dir=tmp_path)
    assert cfg.model.name_or_path
    assert cfg.optim.lr > 0
    assert cfg.data.block_size > 0


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.accumulate_grad_batches=8"],
        ["optim.lr=1e-4", "data.batch_size=4"],
        [
            "experiment=quickstart",
            "trainer.accumulate_grad_batches=8",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=64",
            "data.batch_size=2",
            "data.block_size=64",
        ],
        ["model.name_or_path=gpt2-medium"],
        ["model=gpt2", "model.from_scratch=true"],
        ["optim.warmup_steps=100", "optim.betas=[0.9,0.95]"],
    ],
)
def test_readme_overrides_compose(overrides, tmp_path):
    cfg = compose_train(*overrides, output_dir=tmp_path)
    for override in OverridesParser.create().parse_overrides(overrides):
        if "." in override.key_or_group:  # a value, not a group choice: it must arrive as given
            assert OmegaConf.select(cfg, override.key_or_group) == override.value()


def test_default_is_real_gpt2_and_quickstart_is_tiny(tmp_path):
    assert compose_train(output_dir=tmp_path).model.name_or_path == "gpt2"
    assert not compose_train(output_dir=tmp_path).model.from_scratch
    quick = compose_train("experiment=quickstart", output_dir=tmp_path)
    assert quick.model.from_scratch
    assert quick.model.tokenizer == "bundled"


TRAINER_PRESETS = sorted(p.stem for p in (CONF / "trainer").glob("*.yaml"))
TRAINER_ARGS = inspect.signature(L.Trainer.__init__).parameters
# Lightning Trainer arguments users set from the command line, listed in trainer/default.yaml with Lightning's default.
EVERYDAY_KNOBS = [
    "max_time",
    "min_epochs",
    "min_steps",
    "benchmark",
    "detect_anomaly",
    "profiler",
    "gradient_clip_algorithm",
    "reload_dataloaders_every_n_epochs",
    "use_distributed_sampler",
    "sync_batchnorm",
    "inference_mode",
]


@pytest.mark.parametrize("preset", TRAINER_PRESETS)
def test_trainer_presets_hold_only_trainer_arguments_and_take_everyday_knobs_without_plus(preset, tmp_path):
    knobs = ["trainer.max_time=00:00:05:00", "trainer.min_steps=10", "trainer.profiler=simple"]
    cfg = compose_train(f"trainer={preset}", *knobs, output_dir=tmp_path)
    assert cfg.trainer.max_time == "00:00:05:00"
    assert set(cfg.trainer) <= set(TRAINER_ARGS)
    # pipeline.train passes these itself: in the YAML they would reach L.Trainer twice
    assert not set(cfg.trainer) & {"enable_checkpointing", "logger", "callbacks", "plugins"}


def test_everyday_knobs_default_to_lightnings_own(tmp_path):
    trainer = compose_train(output_dir=tmp_path).trainer
    assert {k: trainer[k] for k in EVERYDAY_KNOBS} == {k: TRAINER_ARGS[k].default for k in EVERYDAY_KNOBS}


def test_sampling_defaults_are_written_once_for_generate_evaluate_and_the_samples_callback():
    written = OmegaConf.to_container(OmegaConf.load(CONF / "sampling" / "default.yaml"))
    assert written == asdict(Sampling())  # the YAML Hydra composes and the library's defaults agree
    for tool in ("generate.yaml", "evaluate.yaml", "callbacks/default.yaml"):
        text = (CONF / tool).read_text()
        assert "sampling" in text
        assert "top_p:" not in text  # not restated
