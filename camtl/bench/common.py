"""What the probe, the diagnosis and the study share: task lists, atomic JSON records, markdown tables,
and running ``run.py`` in a subprocess and reading what it wrote. One helper each, in one place."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from camtl.tasks import TASKS, TRAINABLE_TASKS, evaluation_tasks

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_TASKS = tuple(evaluation_tasks(list(TRAINABLE_TASKS)))
GLUE_AVERAGE_TASKS = tuple(task for task in DEV_TASKS if task != "wnli")
COLUMN_NAMES = {task: TASKS[task].submission_file.removesuffix(".tsv") for task in DEV_TASKS}
# camtl's name for the bundled encoder, not its site-packages path: records made in one checkout can be
# continued and reported from any other.
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


def backbone_label(backbone: str) -> str:
    return "the bundled all-MiniLM-L6-v2 (6 x 384)" if backbone == DEFAULT_BACKBONE else f"`{backbone}`"


def write_json(path: Path, value: object) -> None:
    """Write atomically: an interrupted program never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        f.write(json.dumps(value, indent=2) + "\n")
    os.replace(temp, path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def x100(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


# The run.py processes ``execute`` is waiting for, so that a program stopped by SIGTERM can pass it on.
RUNNING: set[subprocess.Popen] = set()


def replace_flags(flags: tuple[str, ...], **values: str | Sequence[str] | None) -> tuple[str, ...]:
    """``flags`` with ``--name value...`` set (added if absent): a string is one value, a sequence any
    number (none for a switch); None removes the flag. Every spelling of the flag goes first: ``--name``
    with the words up to the next ``--`` word, ``--name=value``, and a switch's ``--no_name``. run.py
    refuses a flag given twice with different values, so a variant of a command replaces, never appends."""
    out = list(flags)
    for name, value in values.items():
        flag = f"--{name}"
        at = 0
        while at < len(out):
            word = out[at]
            if word == flag:
                end = at + 1
                while end < len(out) and not out[end].startswith("--"):
                    end += 1
                del out[at:end]
            elif word.startswith(f"{flag}=") or word == f"--no_{name}":
                del out[at]
            else:
                at += 1
        if value is not None:
            out += [flag, *([value] if isinstance(value, str) else value)]
    return tuple(out)


def execute(flags: Sequence[str], output_dir: Path, threads: int | None = None, fresh: bool = True) -> float:
    """Run ``run.py flags`` into ``output_dir`` (its log beside it); the wall-clock seconds.

    ``threads`` sets OMP_NUM_THREADS for the run (scores are deterministic for a seed and a thread count).
    ``fresh`` empties ``output_dir`` first; without it the folder is kept (a run resumed from its checkpoint)
    and the log is appended to.
    """
    if fresh:
        shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    log = output_dir.with_suffix(".log")
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with log.open("w" if fresh else "a") as handle:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "run.py"), *map(str, flags)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        RUNNING.add(process)
        try:
            process.wait()
        finally:
            RUNNING.discard(process)
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"run.py exited with {process.returncode}; its log is {log}:\n{tail}")
    return time.perf_counter() - start


def git_commit(paths: Sequence[Path], message: str, attempts: int = 6) -> bool:
    """Commit exactly ``paths`` (added first) with ``message``; retried while another git holds the index.

    Returns whether a commit was made (False when nothing changed or git kept failing: the records stay on
    disk and the next commit picks them up)."""
    paths = [str(Path(p).resolve()) for p in paths]
    for attempt in range(attempts):
        add = subprocess.run(["git", "add", "--", *paths], cwd=REPO_ROOT, capture_output=True, text=True)
        if add.returncode == 0:
            commit = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *paths],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
            )
            if commit.returncode == 0:
                return True
            if "nothing" in commit.stdout + commit.stderr and "lock" not in commit.stderr:
                return False
        time.sleep(5 * (attempt + 1))
    print(f"[bench] could not commit {', '.join(paths)}: left for the next commit", flush=True)
    return False


def cpu_seconds_of_children() -> float:
    """User + system CPU seconds of the finished child processes of this process so far."""
    times = os.times()
    return times.children_user + times.children_system


def read_training(output_dir: Path) -> dict:
    """What one finished run.py training wrote (task mix, data used, parameters) as record fields."""
    sampling = read_json(output_dir / "sampling_summary.json")
    parameters = read_json(output_dir / "parameter_report.json")
    tasks = [key.split("/")[1] for key in sampling if key.endswith("/examples_drawn")]
    drawn = {task: sampling[f"sampling/{task}/examples_drawn"] for task in tasks}
    return {
        "examples_drawn": drawn,
        "examples_seen": sum(drawn.values()),
        "percent_data_used": sampling["sampling/percent_used_all"],
        "percent_used_per_task": {task: sampling[f"sampling/{task}/percent_used"] for task in tasks},
        "selection_seconds": sampling.get("sampling/selection_seconds", 0.0),
        "trainable_params": parameters["trainable"],
        "total_params": parameters["total"],
    }


def read_run(output_dir: Path) -> dict:
    """What one finished ``run.py --do_train --do_eval`` wrote, as record fields."""
    metrics = read_json(output_dir / "eval_results.json")
    return {
        **read_training(output_dir),
        "scores": {task: values["score"] for task, values in metrics.items() if isinstance(values, dict)},
        "glue_average": metrics["glue_average"],
        "metrics": metrics,
    }


def train_runtime(output_dir: Path, steps: int) -> tuple[float, list[dict]]:
    """(the Trainer's train_runtime in seconds, from the run's log; the log history of its last checkpoint).

    The checkpoint is written before the Trainer logs its runtime, so the runtime comes from the log. A run
    resumed after a stop logged one runtime per part into the same log: they are summed."""
    state = read_json(output_dir / f"checkpoint-{steps}" / "trainer_state.json")
    return sum(logged_values(output_dir, "train_runtime")), state["log_history"]


def logged_values(output_dir: Path, name: str) -> list[float]:
    """Every value of ``name`` that the Trainer logged in the run's log (``<output_dir>.log``), in order."""
    log = output_dir.with_suffix(".log")
    found = re.findall(rf"'{name}': '?([0-9.eE+-]+)", log.read_text())
    if not found:
        raise RuntimeError(f"no {name} in {log}: did the run finish?")
    return [float(value) for value in found]


def logged_metric(output_dir: Path, name: str) -> float:
    """The last value of ``name`` that the Trainer logged in the run's log."""
    return logged_values(output_dir, name)[-1]
