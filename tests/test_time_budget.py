"""trainer.max_time: the warmup-then-decay schedule sized to end when the time budget does."""

import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import timer as lightning_timer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm import module as lyric_module
from lyric_lm.optim import (
    MEASURE_SKIP,
    MEASURE_STEPS,
    TimeBudget,
    WarmupDecay,
    build_adamw,
    build_scheduler,
    build_timed_scheduler,
    steps_in_budget,
)
from lyric_lm.pipeline import train
from tests.conftest import TINY, compose_train


def test_steps_in_budget_is_whole_steps_capped_by_the_run_and_min_steps():
    # 300 s left at 0.5 s/step after 13 steps: 600 more, so the schedule ends at step 613
    assert steps_in_budget(13, 300.0, 0.5, max_total=10_000) == 613
    assert steps_in_budget(13, 300.0, 0.7, max_total=10_000) == 13 + 428  # 428.6 steps fit: whole ones only
    assert steps_in_budget(13, 300.0, 0.5, max_total=500) == 500  # max_epochs / max_steps come first
    assert steps_in_budget(13, 300.0, 0.5, max_total=10_000, min_steps=1_000) == 1_000  # Lightning trains on
    assert steps_in_budget(13, -2.0, 0.5, max_total=10_000) == 14  # budget spent: 0 from the next step
    assert steps_in_budget(13, 300.0, 0.0, max_total=10_000) == 10_000  # steps faster than the clock's tick


def test_unsized_schedule_is_build_schedulers():
    def lrs(make) -> list[float]:
        opt = build_adamw(torch.nn.Linear(2, 2), lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999))
        sched, out = make(opt), []
        for _ in range(101):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert lrs(lambda o: build_timed_scheduler(o, 10, 100)) == pytest.approx(lrs(lambda o: build_scheduler(o, 10, 100)))


def test_resize_bends_the_schedule_without_a_jump_and_ends_at_the_new_total():
    schedule = WarmupDecay(warmup=100, total=1_000)  # sized by max_epochs: 1,000 steps, 100 of warmup
    before = schedule(13)
    schedule.resize(13, warmup=30, total=300, step_s=0.5)  # the time budget allows 300
    assert schedule(13) == before == 0.13  # no jump at the step it is resized at
    assert schedule(30) == 1.0  # warmup ends early, at 10% of the new run
    assert schedule(165) == pytest.approx(0.5)  # halfway through the decay
    assert schedule(300) == schedule(400) == 0.0
    assert schedule.step_s == 0.5

    schedule.resize(200, warmup=30, total=250, step_s=0.6)  # a validation showed slower steps: decay faster
    assert schedule(200) == pytest.approx(100 / 270)
    assert schedule(225) == pytest.approx(50 / 270)
    assert schedule(250) == 0.0


def test_resize_past_the_new_warmup_goes_straight_to_the_decay():
    # A short budget: by the time the steps are timed (step 13), a 66-step run would have warmed up (6 steps).
    schedule = WarmupDecay(warmup=100, total=1_000)
    schedule.resize(13, warmup=6, total=66, step_s=0.5)
    assert schedule(13) == pytest.approx(53 / 60)  # that run's value at step 13, not the 0.13 of the long warmup
    assert schedule(66) == 0.0


def test_sized_schedule_is_saved_with_the_scheduler_and_restored():
    opt = build_adamw(torch.nn.Linear(2, 2), lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999))
    sched = build_timed_scheduler(opt, 10, 1_000)
    sched.lr_lambdas[0].resize(13, warmup=20, total=200, step_s=0.25)
    state = sched.state_dict()  # what a Lightning checkpoint holds under "lr_schedulers"
    resumed = build_timed_scheduler(opt, 10, 1_000)  # configure_optimizers of the resumed run
    resumed.load_state_dict(state)
    assert resumed.lr_lambdas[0].knots == sched.lr_lambdas[0].knots
    assert resumed.lr_lambdas[0].step_s == 0.25
    assert resumed.lr_lambdas[0].total == 200


def test_time_budget_sizes_after_timed_steps_then_at_each_validation():
    budget = TimeBudget(WarmupDecay(50, 5_000), max_total=5_000, warmup_steps=None, warmup_ratio=0.1, min_steps=0)
    now, sized = 0.0, []
    for step in range(1, MEASURE_SKIP + MEASURE_STEPS + 1):
        now += 0.5 if step > MEASURE_SKIP else 2.0  # slow first steps (warm-up) are not timed
        sized.append(budget.step_ended(step, now))
    assert sized[:-1] == [None] * (len(sized) - 1)
    assert sized[-1] == 0.5  # the median of the timed steps

    budget.resize(13, remaining_s=100.0, step_s=0.5)
    assert budget.schedule.total == 13 + 200
    assert budget.schedule(round(0.1 * 213)) == 1.0  # warmup_ratio of the sized run

    now += 0.5 * 7 + 10.0  # 7 more steps to step 20, then a validation of 10 s
    assert budget.validation_ended(20, now) == pytest.approx((0.5 * 17 + 10.0) / 17)  # since step 3, validation in
    assert budget.step_ended(21, now + 0.5) is None  # sized already; and a step spanning a validation is not timed


class FakeClock(L.Callback):
    """Time that passes only as this callback says: STEP_S per training batch, VAL_S per validation."""

    STEP_S, VAL_S = 0.125, 0.5  # exact in binary: the step the budget ends at is exact too
    now = 0.0

    def on_train_batch_start(self, *args) -> None:
        FakeClock.now += FakeClock.STEP_S

    def on_validation_start(self, trainer, pl_module) -> None:
        FakeClock.now += FakeClock.VAL_S


def test_lr_reaches_zero_when_max_time_runs_out(corpus, tmp_path, monkeypatch, caplog):
    # Lightning's Timer (trainer.max_time) and the schedule's sizing read this clock: 0.125 s a step, 0.5 s a
    # validation (one every 8 steps), so the 5 s budget ends at step 28 (28 x 0.125 + 3 x 0.5 = 5.0).
    fake_time = SimpleNamespace(monotonic=lambda: FakeClock.now)
    monkeypatch.setattr(lightning_timer, "time", fake_time)
    monkeypatch.setattr(lyric_module, "time", fake_time)
    monkeypatch.setattr(FakeClock, "now", 0.0)
    run = tmp_path / "run"
    cfg = compose_train(
        *TINY,
        f"data.path={corpus}",
        "trainer.max_time=00:00:00:05",
        "trainer.max_epochs=100",  # 1,900 steps: far beyond the budget
        "trainer.val_check_interval=8",
        "trainer.check_val_every_n_epoch=null",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "optim.warmup_steps=20",
        "export_hf=false",
        "callbacks.samples=null",
        f"+callbacks.clock._target_={FakeClock.__module__}.FakeClock",  # this very class, however pytest imports it
        output_dir=run,
    )
    with caplog.at_level(logging.INFO, logger="lyric_lm.module"):
        train(cfg)

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    lr = [e.value for e in events.Scalars("train/lr/decay")]  # the learning rate of each optimizer step
    assert len(lr) == 28
    assert max(lr) == pytest.approx(cfg.optim.lr)  # warmed up to the peak ...
    assert lr[-1] < 0.05 * cfg.optim.lr  # ... and down to ~0 by the last step (the plain schedule: ~ the peak)
    assert all(a >= b for a, b in zip(lr[lr.index(max(lr)) :], lr[lr.index(max(lr)) + 1 :], strict=False))
    # The first sizing, from the timed steps alone: validations make later re-sizes move the end earlier.
    sized = "max_time 0:00:05: ~36 optimizer steps at 0.125 s/step; the learning rate reaches 0 at step 36"
    assert sized in caplog.text
    schedule = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["lr_lambdas"][0]
    assert schedule["step_s"] > 0.125  # the last re-size, validations included, is in the checkpoint
    assert 26 <= schedule["knots"][-1][0] <= 28
