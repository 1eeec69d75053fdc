"""Where a run writes: checks before heavy work, and a run that must not replace another run's results.

A directory is checked by writing a small file into it (or into the nearest parent that exists, where
it will be created) and deleting it again: that finds a read-only file system, missing permissions and
a full disk alike, whoever runs camtl (root ignores permission bits, not a read-only mount).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from camtl.errors import CamtlError, UsageError

logger = logging.getLogger(__name__)

PROBE_BYTES = 64 * 1024  # enough that a full disk refuses it


def _nearest_existing(directory: Path) -> Path:
    path = directory.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(flag: str, directory: Path) -> None:
    """One line naming ``directory`` when it is a file, sits under a file, or cannot take a new file."""
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        if existing == directory.absolute():
            raise UsageError(f"{flag} {directory} is a file: choose a directory")
        raise UsageError(
            f"{flag} {directory} cannot be created: {existing} is a file, not a directory:"
            f" choose another {flag}"
        )
    where = "" if existing == directory.absolute() else f" (in {existing}, where it would be created)"
    try:
        handle, name = tempfile.mkstemp(dir=existing, prefix=".camtl-write-test-")
        try:
            with os.fdopen(handle, "wb") as probe:
                probe.write(b"\0" * PROBE_BYTES)
                probe.flush()
                os.fsync(probe.fileno())
        finally:
            Path(name).unlink(missing_ok=True)
    except OSError as error:
        denied = f"is not writable (permission denied{where}): choose another {flag} or fix its permissions"
        reasons = {
            errno.EROFS: f"is on a read-only file system{where}: choose another {flag}",
            errno.EACCES: denied,
            errno.EPERM: denied,
            errno.ENOSPC: f"has no space left on its device{where}: free some space or choose another {flag}",
            errno.EDQUOT: f"is over its disk quota{where}: free some space or choose another {flag}",
        }
        reason = reasons.get(
            error.errno, f"cannot be written ({error.strerror}{where}): choose another {flag}"
        )
        raise UsageError(f"{flag} {directory} {reason}") from None


def has_results(directory: Path) -> bool:
    return directory.is_dir() and any(directory.iterdir())


def beside(output_dir: Path) -> Path:
    """A new folder for a run that would otherwise write over another run's results in ``output_dir``."""
    for number in range(1, 10_000):
        candidate = output_dir / f"evaluation-{number}"
        if not candidate.exists():
            return candidate
    raise UsageError(f"--output_dir {output_dir} holds 9,999 evaluations: choose another --output_dir")


def results_dir(args) -> Path:
    """Where this run writes. A run without --do_train into a directory that already holds files (a trained
    run, an earlier evaluation) writes into a new ``evaluation-N`` folder inside it, so that nothing of the
    earlier run is replaced; --overwrite_output_dir writes into the directory itself."""
    output_dir = Path(args.output_dir)
    if args.do_train or args.overwrite_output_dir or not has_results(output_dir):
        return output_dir
    return beside(output_dir)


def redirect_outputs(args, directory: Path) -> None:
    """Point the Trainer (and TensorBoard, when it logs under the output directory) at ``directory``."""
    if Path(args.output_dir) == directory:
        return
    logger.warning(
        "--output_dir %s already holds another run's results: this run writes into %s instead"
        " (add --overwrite_output_dir to write into %s itself)",
        args.output_dir,
        directory,
        args.output_dir,
    )
    if args.logging_dir == os.path.join(args.output_dir, "runs"):
        args.logging_dir = str(directory / "runs")
        os.environ["TENSORBOARD_LOGGING_DIR"] = args.logging_dir
    args.output_dir = str(directory)


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
LOW_SPACE = 64 * 2**20


def disk_problem(error: BaseException, directory: Path) -> str | None:
    """What a failed write says about the disk ("no space left on its disk, 0 MiB free"), or None when the
    failure is not the disk's. torch and safetensors report a full disk as their own errors (torch only as
    "unexpected pos 576 vs 534"), hence the look at the free space."""
    if not (isinstance(error, (OSError, RuntimeError)) or type(error).__name__ == "SafetensorError"):
        return None  # a bug, not the disk
    try:
        free = shutil.disk_usage(_nearest_existing(directory)).free
    except OSError:
        free = None
    if isinstance(error, OSError) and error.errno in DISK_ERRORS:
        reason = error.strerror or os.strerror(error.errno)
    elif "No space left" in str(error) or (free is not None and free < LOW_SPACE):
        reason = "no space left on its disk"
    else:
        return None
    return f"{reason}, {free / 2**20:.0f} MiB free" if free is not None else reason


@contextmanager
def writing_results(directory: Path) -> Iterator[None]:
    """A disk that fills up (or turns read-only) while results are written: one line naming the directory."""
    try:
        yield
    except Exception as error:
        problem = disk_problem(error, directory)
        if problem is None:
            raise
        raise CamtlError(
            f"writing into {directory} failed ({problem}): its complete checkpoints stay usable:"
            " free some space, then run again (with --resume_from_checkpoint latest to continue training)"
        ) from None
