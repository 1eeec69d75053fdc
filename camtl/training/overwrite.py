"""``--overwrite_output_dir`` that never leaves a folder worse than it found it.

A new training run into a folder that holds an earlier run (a run resuming from a checkpoint outside the
folder is a new one there) moves the earlier run's files into a hidden folder ``.camtl-earlier-run``
inside it (a rename: cheap, and on the same disk) instead of deleting them. The earlier run is deleted
once the new run can stand on its own: its final model is saved, or it has a complete checkpoint to
resume from. A run that fails (or is stopped) before that is undone: its files are removed and the
earlier run's moved back. A run killed outright is settled the same way by the next training run into
the folder. Only camtl's own files move: anything else in the folder stays put.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from camtl.tasks import TASKS
from camtl.training.checkpoints import (
    last_good,
    new_run_id,
    read_marker,
    remove_stale_staging,
    run_id_of,
    write_run_file,
)

logger = logging.getLogger(__name__)

ASIDE = ".camtl-earlier-run"
# What a camtl run writes at the top of its output directory (the model, its tokenizer, results, logs).
RUN_FILES = (
    "checkpoint-*", "tmp-checkpoint-*", "evaluation-*", "predictions", "runs", "run.json",
    "eval_results.json", "eval_history.json", "sampling_summary.json", "train_results.json",
    "glue_submission.zip",
    "parameter_report.json", "training_args.bin", "config.json", "generation_config.json",
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spm.model", "sentencepiece.bpe.model", "chat_template.jinja",
)  # fmt: skip


def run_files(output_dir: Path) -> list[Path]:
    """The entries of ``output_dir`` that a camtl run writes (GLUE submission files included)."""
    if not output_dir.is_dir():
        return []
    patterns = RUN_FILES + tuple(t.submission_file for t in TASKS.values() if t.submission_file)
    return sorted(p for p in output_dir.iterdir() if any(fnmatch.fnmatch(p.name, x) for x in patterns))


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def set_aside(output_dir: Path) -> list[Path]:
    """Move the earlier run's files into ``ASIDE``; the names moved."""
    earlier = run_files(output_dir)
    if earlier:
        aside = output_dir / ASIDE
        aside.mkdir()
        logger.warning(
            "--overwrite_output_dir: the earlier run's %s in %s are kept aside until this run has a"
            " checkpoint or ends, then deleted (restored if this run fails before that)",
            ", ".join(p.name for p in earlier),
            output_dir,
        )
        for path in earlier:
            os.rename(path, aside / path.name)
    return earlier


def settle(output_dir: Path, world_size: int) -> None:
    """Delete the earlier run kept aside once the new run can resume on its own; else put it back."""
    aside = output_dir / ASIDE
    if not aside.is_dir():
        return
    if last_good(output_dir, run_id_of(output_dir), world_size) is not None:
        shutil.rmtree(aside)
        return
    for path in run_files(output_dir):  # the failed run's: nothing it wrote can be resumed
        _remove(path)
    for path in sorted(aside.iterdir()):
        os.rename(path, output_dir / path.name)
    aside.rmdir()
    logger.warning(
        "the earlier run in %s is restored: this run ended before its first checkpoint", output_dir
    )


class Replacement:
    """The new run's id, and the earlier run kept aside until ``discard_earlier`` (the new model is saved)."""

    def __init__(self, output_dir: Path, run_id: str):
        self.output_dir, self.run_id = output_dir, run_id

    def discard_earlier(self) -> None:
        shutil.rmtree(self.output_dir / ASIDE, ignore_errors=True)


def resumes_from_within(output_dir: Path, resume: Path | None) -> bool:
    """A resume from a checkpoint inside ``output_dir`` continues the run there, which stays; one from
    elsewhere replaces whatever earlier run the folder holds, like a fresh start."""
    return resume is not None and resume.resolve().is_relative_to(output_dir.resolve())


@contextmanager
def replacing_earlier_run(
    output_dir: Path, resume: Path | None, is_main: bool, world_size: int
) -> Iterator[Replacement]:
    """A training run that replaces (or resumes) the run in ``output_dir``: its id (a resumed run keeps
    its checkpoint's) is written to run.json; an earlier run (any, unless ``resume`` lies in the folder)
    is set aside and settled when the block ends."""
    run_id = ((read_marker(resume) or {}).get("run_id") if resume else None) or new_run_id()
    replacement = Replacement(output_dir, run_id)
    if not is_main:
        yield replacement
        return
    settle(output_dir, world_size)  # a run killed outright left an earlier run aside
    if not resumes_from_within(output_dir, resume):
        set_aside(output_dir)
    remove_stale_staging(output_dir)
    write_run_file(output_dir, run_id)
    try:
        yield replacement
    except BaseException:
        settle(output_dir, world_size)
        raise
    replacement.discard_earlier()
