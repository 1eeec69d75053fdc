"""One error type for bad input, reported as a single line with exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., object])


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


def exits_cleanly_on_usage_error(main: F) -> F:
    """Wrap a command-line entry point: a UsageError becomes one line on stderr and exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    return wrapper  # type: ignore[return-value]
