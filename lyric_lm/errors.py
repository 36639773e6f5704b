"""The one exception type for mistakes a user can fix, and how entry points report it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class LyricLMError(Exception):
    """A problem with the user's input or settings; the message names it and says how to fix it."""


def exit_on_user_error(fn: Callable[[], T]) -> T:
    """Run an entry point; on LyricLMError print its one-line message and exit 2, with no traceback.

    Inside a Hydra multirun the error is re-raised instead, so the sweep records the job as failed
    and goes on with the others.
    """
    try:
        return fn()
    except LyricLMError as err:
        if _in_multirun():
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
