"""The one exception type for mistakes a user can fix, and how entry points report it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

T = TypeVar("T")


class LyricLMError(Exception):
    """A problem with the user's input or settings; the message names it and says how to fix it."""


class RunStopped(BaseException):
    """A run stopped by a signal (SIGTERM, Ctrl-C): the message says what was saved and how to resume.

    The process exits with `128 + signal number` (143 for SIGTERM, 130 for Ctrl-C), as a shell reports a program
    killed by that signal, so scripts and schedulers see the stop. A BaseException, like KeyboardInterrupt: no
    `except Exception` on the way out (Lightning's, a sweep's) takes it for a failure of the job.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def exit_on_user_error(fn: Callable[[], T]) -> T | None:
    """Run an entry point; on LyricLMError print its one-line message and exit 2, with no traceback.

    Inside a Hydra multirun a failing job must not end the sweep (Hydra's sweepers raise its exception only
    after the batch, skipping the summary): the error is logged, the job's result.json says "failed", and the
    job returns None, which the sweepers record (Optuna marks the trial failed). The sweep summary then lists
    the failure and the sweep exits non-zero (lyric_lm/run/sweep.py).
    """
    try:
        return fn()
    except RunStopped as stop:  # also ends a sweep: the user or the scheduler stopped the whole process
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    except Exception as err:
        if in_multirun():
            log = logging.getLogger("lyric_lm")
            if isinstance(err, LyricLMError):
                log.error(f"error: {err}")
            else:  # a bug or a crash: its traceback goes to the job's log
                log.exception(f"job failed: {type(err).__name__}: {err}")
            return None
        if not isinstance(err, LyricLMError):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
