"""One error type for bad input, reported as a single line with exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USAGE = 2
EXIT_SIGINT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_SIGTERM = 143  # 128 + SIGTERM

F = TypeVar("F", bound=Callable[..., object])


class CamtlError(Exception):
    """An error reported to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(CamtlError):
    """Bad input from the user: the message names the problem and the fix."""

    exit_code = EXIT_USAGE


class TrainingDiverged(CamtlError):
    """The loss became NaN or infinite: training stops instead of learning from garbage."""


class CheckpointSaveFailed(CamtlError):
    """Writing a checkpoint failed (a full disk, most often); the previous checkpoint is intact."""


class Stopped(BaseException):
    """A signal stopped the run. A BaseException, like KeyboardInterrupt, so that no ``except Exception``
    on the way (a cache rebuild, a save's clean-up) can swallow it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _report(message: str, exit_code: int) -> None:
    """The one line, on a line of its own: a progress bar that the error interrupted is closed first."""
    try:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    except Exception:  # the line matters more than the bar
        pass
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def exits_cleanly_on_usage_error(main: F) -> F:
    """Wrap a command-line entry point: a CamtlError becomes one line on stderr and its exit code
    (2 for bad input); a signal, one line and 128 + its number."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CamtlError as error:
            _report(str(error), error.exit_code)
        except Stopped as stop:
            _report(str(stop), stop.exit_code)
        except KeyboardInterrupt:
            _report("interrupted (Ctrl-C)", EXIT_SIGINT)

    return wrapper  # type: ignore[return-value]
