"""AdamW parameter groups, warmup length and the warmup-then-linear-decay schedule, sized by steps or by time."""

from __future__ import annotations

import itertools
import math
import statistics

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from lyric_lm.errors import LyricLMError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (dim >= 2: linear/Conv1D weights, embeddings) but not biases or LayerNorm weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, "name": "decay"},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float = 1e-8, **kwargs
) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps, **kwargs)


def warmup_steps(total_steps: float, warmup_steps: int | None, warmup_ratio: float) -> int:
    """Warmup length in optimizer steps: `warmup_steps` if set, else `warmup_ratio` of the run, rounded."""
    if not math.isfinite(total_steps) or total_steps <= 0:
        raise LyricLMError("the run has no end: set trainer.max_steps or trainer.max_epochs")
    total_steps = int(total_steps)
    steps = warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps)
    if not 0 <= steps < max(total_steps, 1):
        raise LyricLMError(
            f"warmup of {steps} optimizer steps does not fit a run of {total_steps}; "
            "lower optim.warmup_steps / optim.warmup_ratio or train longer"
        )
    return steps


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total_steps: int):
    """LR multiplier 0 at step 0, 1 at the end of warmup, then linear to 0 at `total_steps`."""
    return get_linear_schedule_with_warmup(optimizer, warmup, int(total_steps))


class WarmupDecay:
    """The same warmup-then-linear-decay multiplier as `build_scheduler`'s, as a line through (step, multiplier)
    knots that `resize` can move while training (a time budget). LambdaLR's state_dict saves a callable object's
    `__dict__`, so the knots and the measured seconds per step go into every checkpoint as plain lists and floats,
    and a resumed run continues the very same schedule."""

    def __init__(self, warmup: int, total: int):
        self.knots = [[0, 0.0], [warmup, 1.0], [total, 0.0]]  # [step, multiplier]; a step never decreases
        self.step_s: float | None = None  # seconds per optimizer step the schedule was last sized with

    @property
    def total(self) -> int:
        """The step at which the multiplier reaches 0."""
        return self.knots[-1][0]

    def __call__(self, step: int) -> float:
        for (x0, y0), (x1, y1) in itertools.pairwise(self.knots):
            if step < x1:
                return y0 + (y1 - y0) * (step - x0) / (x1 - x0)
        return 0.0

    def resize(self, step: int, warmup: int, total: int, step_s: float) -> None:
        """From `step` on, reach 1 at `warmup` if that is still ahead, then 0 at `total`. The multiplier bends from
        its current value, without a jump, unless it is still warming up towards a peak the re-sized run has passed:
        it then goes straight to that run's decay (a short budget would otherwise never reach the peak)."""
        total = max(total, step + 1)
        warming_up = self(step + 1) > self(step)
        here = (total - step) / (total - warmup) if warming_up and warmup <= step else self(step)
        ahead = [[warmup, 1.0]] if warmup > step else []
        self.knots = [k for k in self.knots if k[0] < step] + [[step, here], *ahead, [total, 0.0]]
        self.step_s = step_s


def build_timed_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total_steps: int) -> LambdaLR:
    """`build_scheduler`'s schedule (the same values until resized), resizable through `.lr_lambdas[0].resize`."""
    return LambdaLR(optimizer, WarmupDecay(warmup, int(total_steps)))


def steps_in_budget(step: int, remaining_s: float, step_s: float, max_total: float, min_steps: int = 0) -> int:
    """The optimizer step at which a time budget runs out: `step` plus the whole steps of `step_s` seconds that fit
    in `remaining_s`, no later than `max_total` (max_epochs / max_steps) and no earlier than `min_steps`."""
    fit = step + int(max(remaining_s, 0.0) / step_s) if step_s > 0 else max_total  # > 0 unless the clock is coarse
    return int(min(max_total, max(fit, min_steps, step + 1)))


def budget_warmup(total: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    """`warmup_steps`' rule on a re-sized run: `warmup_steps` if set, else `warmup_ratio` of it, kept below its end
    (a time budget shorter than an explicit warmup shortens the warmup rather than stopping the run)."""
    steps = warmup_steps if warmup_steps is not None else round(warmup_ratio * total)
    return min(steps, total - 1)


MEASURE_SKIP = 3  # optimizer steps not timed: allocator warm-up, lazy initialisation, torch.compile's first graphs
MEASURE_STEPS = 10  # optimizer steps whose median time first sizes the schedule


class TimeBudget:
    """When to size a `WarmupDecay` schedule so it reaches 0 as `trainer.max_time` runs out, and at what s/step.

    First after MEASURE_SKIP + MEASURE_STEPS optimizer steps, from the median time of the last MEASURE_STEPS (a step
    spanning a validation is not timed). Then again at the end of each validation, from the wall time per step since
    the first MEASURE_SKIP steps, validations included: what a validation costs is spread over the steps between
    validations, as if they kept coming at that rate (over-estimated while few have passed: the learning rate
    reaches 0 a little early). Re-sizing bends the schedule (WarmupDecay.resize). Fed times by its caller, so it is
    tested without a clock or a Trainer.
    """

    def __init__(
        self, schedule: WarmupDecay, max_total: float, warmup_steps: int | None, warmup_ratio: float, min_steps: int
    ):
        self.schedule, self.max_total, self.min_steps = schedule, max_total, min_steps
        self.warmup_steps, self.warmup_ratio = warmup_steps, warmup_ratio
        self.steps_seen = 0  # optimizer steps in this process (a resumed run measures again)
        self.step_times: list[float] = []
        self.last: float | None = None  # when the last optimizer step ended; None after a validation
        self.since: tuple[int, float] | None = None  # (step, time) where the wall-time-per-step window opens

    def step_ended(self, step: int, now: float) -> float | None:
        """After optimizer step `step`: the seconds per step to size the schedule with, once it is time to."""
        last, self.last = self.last, now
        self.steps_seen += 1
        if self.steps_seen == MEASURE_SKIP:
            self.since = (step, now)
        if self.steps_seen <= MEASURE_SKIP or last is None or self.schedule.step_s is not None:
            return None  # warming up, just after a validation, or sized already (also before a resume)
        self.step_times.append(now - last)
        return statistics.median(self.step_times) if len(self.step_times) == MEASURE_STEPS else None

    def validation_ended(self, step: int, now: float) -> float | None:
        """After a validation at `step`: the wall seconds per step so far, validations included, if enough steps."""
        self.last = None  # the next step's time would include this validation's
        if self.since is None or step - self.since[0] < MEASURE_STEPS:
            return None
        return (now - self.since[1]) / (step - self.since[0])

    def resize(self, step: int, remaining_s: float, step_s: float) -> None:
        """End the schedule where `remaining_s` of `step_s`-second steps after `step` run out."""
        total = steps_in_budget(step, remaining_s, step_s, self.max_total, self.min_steps)
        self.schedule.resize(step, budget_warmup(total, self.warmup_steps, self.warmup_ratio), total, step_s)
