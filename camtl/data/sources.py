"""Where each task's files are: one or more data folders (``--data_dir glue data``), each task in the one
that holds its folder."""

from __future__ import annotations

from pathlib import Path

from camtl.data.splits import task_folder_problem
from camtl.errors import UsageError
from camtl.tasks import TASKS


def task_data_dir(task: str, data_dirs: list[str | Path] | None) -> Path:
    """The data folder of ``task``: the one that holds its folder (a task file's tasks name their files,
    by absolute paths, so any folder does, and none is needed).

    With one data folder it is that folder, whatever it holds (a missing split is reported by the reader,
    naming the file); with several, no match or more than one is an error naming the folders. A folder
    named twice (``glue glue/``, or ``glue`` and its absolute path) counts once."""
    distinct = {}
    for data_dir in map(Path, data_dirs or ()):
        distinct.setdefault(data_dir.resolve(), data_dir)  # the first spelling, for the messages
    dirs = list(distinct.values())
    folder = TASKS[task].folder
    if not folder:
        return dirs[0] if dirs else Path()
    if not dirs:
        raise UsageError(
            f"task '{task}' is read from a data folder: pass --data_dir (the folder that holds"
            f" {folder}/), or use --task_file tasks alone"
        )
    if len(dirs) == 1:
        return dirs[0]
    holding = [d for d in dirs if (d / folder).is_dir()]
    if not holding:
        for data_dir in dirs:  # glue/RTE among them, for glue
            problem = task_folder_problem(data_dir, task)
            if problem:
                raise UsageError(f"task '{task}': {problem}")
        searched = " ".join(str(d) for d in dirs)
        raise UsageError(
            f"task '{task}': no --data_dir holds its folder {folder} (searched {searched}):"
            " add the data folder that does"
        )
    if len(holding) > 1:
        found = " and ".join(str(d) for d in holding)
        raise UsageError(f"task '{task}': both {found} hold {folder}: keep one of them in --data_dir")
    return holding[0]
