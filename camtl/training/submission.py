"""Test-set prediction files: GLUE leaderboard TSVs zipped for gluebenchmark.com, a jsonl per other task."""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from camtl.data.sources import task_data_dir
from camtl.data.splits import read_split
from camtl.tasks import TASKS, canonical_task_name

logger = logging.getLogger(__name__)

SUBMISSION_ZIP = "glue_submission.zip"


def format_prediction(task: str, value: int | float) -> str:
    """One prediction as GLUE expects it: the label string, or an STS-B score clipped to [0, 5], 3 decimals.

    ``value`` is a class index for classification tasks (CoLA, SST-2, MRPC, QQP and WNLI labels are
    the strings "0" and "1") and a float score for STS-B.
    """
    spec = TASKS[canonical_task_name(task)]
    if spec.is_regression:
        score = float(value)
        if not math.isfinite(score):
            raise ValueError(f"{spec.name}: prediction {value} is not a finite score")
        low, high = spec.label_range
        return f"{min(max(score, low), high):.3f}"
    index = operator.index(value)
    if not 0 <= index < spec.num_labels:
        raise ValueError(f"{spec.name}: class index {index} is outside [0, {spec.num_labels})")
    return spec.labels[index]


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block completes."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; these are ordinary output files
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _row_ids(task: str, ids: list[str], count: int) -> list[str]:
    if len(ids) != count:
        raise ValueError(f"{task}: {len(ids)} ids for {count} predictions")
    ids = [str(index).strip() for index in ids]
    # GLUE test indices are the row positions; when some are missing, number every row so no id repeats.
    if not all(ids):
        return [str(position) for position in range(count)]
    return ids


def cut_short(tasks: list[str], data_dirs: list[str] | None, max_predict_samples: int | None) -> list[str]:
    """The tasks whose test file holds more rows than the ``--max_predict_samples`` predicted (one more
    row is read to tell: a test file of exactly that many rows was predicted whole)."""
    if max_predict_samples is None:
        return []
    one_more = max_predict_samples + 1
    return [t for t in tasks if len(read_split(task_data_dir(t, data_dirs), t, "test", one_more)) == one_more]


def write_submission(
    predictions: dict[str, tuple[list[str], np.ndarray]], output_dir: str | Path, partial: Sequence[str] = ()
) -> Path | None:
    """Write ``<output_dir>/<Task>.tsv`` for each task and zip them flat into ``glue_submission.zip``.

    ``predictions`` maps a task to its test ids (the index column, blank when absent) and predictions.
    Returns the zip path; None, with a warning, when some tasks predicted only part of their test set
    (``partial``, see ``cut_short``): the leaderboard scores every test row, so no zip is written that
    looks like a submission.
    """
    if not predictions:
        raise ValueError("no task predictions to write")
    # Format every task before writing anything, so bad input leaves the output folder as it was.
    contents: dict[str, str] = {}
    for task, (ids, values) in predictions.items():
        spec = TASKS[canonical_task_name(task)]
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"{spec.name}: expected a non-empty 1-D array of predictions, got shape {values.shape}"
            )
        if spec.submission_file in contents:
            raise ValueError(f"{spec.name} is given twice (as '{task}' and another spelling)")
        rows = zip(_row_ids(spec.name, ids, len(values)), values.tolist(), strict=True)
        lines = ["index\tprediction"] + [
            f"{index}\t{format_prediction(spec.name, value)}" for index, value in rows
        ]
        contents[spec.submission_file] = "\n".join(lines) + "\n"

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        with _atomic_path(output_dir / name) as temporary:
            temporary.write_text(text, encoding="utf-8", newline="\n")
    if partial:
        # An earlier whole prediction's zip would now pair with these partial files: it goes.
        (output_dir / SUBMISSION_ZIP).unlink(missing_ok=True)
        files = ", ".join(TASKS[canonical_task_name(task)].submission_file for task in partial)
        logger.warning(
            "--max_predict_samples predicted only the first test rows in %s: no %s is written (the"
            " leaderboard scores every row); predict without --max_predict_samples to submit",
            files,
            SUBMISSION_ZIP,
        )
        return None

    zip_path = output_dir / SUBMISSION_ZIP
    with (
        _atomic_path(zip_path) as temporary,
        zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for name in contents:
            archive.write(output_dir / name, arcname=name)
    return zip_path


def prediction_record(task: str, value) -> object:
    """One prediction of a task without a GLUE file, as its label names: a class or choice name, a score,
    or the tags of a sentence's words."""
    spec = TASKS[canonical_task_name(task)]
    if spec.type == "token_classification":
        return [spec.labels[int(tag)] for tag in value]
    if spec.is_regression:
        return float(value)
    return spec.labels[operator.index(value)] if value >= 0 else None


def write_predictions(predictions: dict[str, tuple[list[str], object]], output_dir: str | Path) -> list[Path]:
    """``<output_dir>/predictions/<task>.jsonl`` per task: one ``{"id": ..., "prediction": ...}`` per row."""
    folder = Path(output_dir) / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task, (ids, values) in predictions.items():
        values = values.tolist() if isinstance(values, np.ndarray) else values
        lines = [
            json.dumps({"id": row_id, "prediction": prediction_record(task, value)})
            for row_id, value in zip(ids, values, strict=True)
        ]
        path = folder / f"{canonical_task_name(task)}.jsonl"
        with _atomic_path(path) as temporary:
            temporary.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
        written.append(path)
    return written
