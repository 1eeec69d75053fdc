"""One error type for bad input, reported as a single line with exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., object])


class CamtlError(Exception):
    """An error reported to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(CamtlError):
    """Bad input from the user: the message names the problem and the fix."""

    exit_code = EXIT_USAGE


class TrainingDiverged(CamtlError):
    """The loss became NaN or infinite: training stops instead of learning from garbage."""


def exits_cleanly_on_usage_error(main: F) -> F:
    """Wrap a command-line entry point: a CamtlError becomes one line on stderr and its exit code
    (2 for bad input)."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CamtlError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)

    return wrapper  # type: ignore[return-value]
